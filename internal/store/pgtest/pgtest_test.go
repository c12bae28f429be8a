package pgtest

import (
	"database/sql"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

func TestStart(t *testing.T) {
	dsn1, dsn2 := Start(t), Start(t)
	if dsn1 == dsn2 {
		t.Fatalf("two tests got the same database %s", dsn1)
	}
	db1, db2 := open(t, dsn1), open(t, dsn2)
	if _, err := db1.Exec(`CREATE TABLE t (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db2.QueryRow(`SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 't'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatal("a table made in one test's database shows in another's")
	}
}

func open(t *testing.T, dsn string) *sql.DB {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestFindBinariesMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	defer func(g string) { debianBinaries = g }(debianBinaries)
	debianBinaries = t.TempDir() + "/*/bin"
	_, err := findBinaries()
	want := "PostgreSQL server binaries not found: install postgresql (the test command does this)"
	if err == nil || err.Error() != want {
		t.Fatalf("got error %v, want %q", err, want)
	}
}

func TestFindBinaries(t *testing.T) {
	dir, err := findBinaries()
	if err != nil {
		t.Fatal(err) // this machine runs the other tests on a throwaway server
	}
	if !isFile(dir+"/initdb") || !isFile(dir+"/postgres") {
		t.Fatalf("%s lacks initdb or postgres", dir)
	}
}

func TestWithDatabase(t *testing.T) {
	for _, tt := range []struct{ dsn, want string }{
		{"host=127.0.0.1 port=5432 user=ward dbname=postgres", "host=127.0.0.1 port=5432 user=ward dbname=postgres dbname=x"},
		{"postgres://ward:pw@db:5432/postgres?sslmode=disable", "postgres://ward:pw@db:5432/x?sslmode=disable"},
		{"postgresql://ward@db", "postgresql://ward@db/x"},
	} {
		got, err := withDatabase(tt.dsn, "x")
		if err != nil || got != tt.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", tt.dsn, got, err, tt.want)
		}
	}
}
