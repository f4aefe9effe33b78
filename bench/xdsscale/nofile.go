package main

// rlimit is an open-file limit.
type rlimit struct{ Soft, Hard uint64 }

// NoFileLimit is the open-file limit before and after the harness raised
// it for the run.
type NoFileLimit struct {
	Needed        uint64
	Before, After rlimit
	Raised        bool
	Err           error
}
