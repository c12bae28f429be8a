package ca

// SetRenewChecked makes every renewal of c call f between its revocation
// check and its recording, to widen the window a revocation can race.
func SetRenewChecked(c *CA, f func()) { c.renewChecked = f }
