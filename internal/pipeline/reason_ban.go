package pipeline

import "net/http"

// Banned refuses a caller that a Ban names (address or CIDR, API key,
// user or workload): 403, whatever credentials it brings. Which ban, and
// why, goes to the record only.
var Banned = register("banned", http.StatusForbidden, "")
