//! The real binary: exit codes, error messages, import, the daemon's shutdown, the demo.
