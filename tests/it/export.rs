//! Export, stats totals and manual resolution.
