//! Integration tests: one binary. Real SQLite files in temp dirs and a real PostgreSQL started
//! by the harness, the simulator over loopback HTTP, the real `payrecon` binary for the command
//! line. No mocks of our own code.

mod architecture;
mod backup;
mod browser;
mod cli;
mod conformance;
mod console;
mod crash;
mod doors;
mod engines;
mod export;
mod history;
mod learned;
mod ops;
mod outbox;
mod package;
mod pgtls;
mod providers;
mod reconcile;
mod rules;
mod support;
mod sweeps;
mod upgrades;
