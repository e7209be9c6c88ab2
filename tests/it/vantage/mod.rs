//! Vantage points without a database: one simulator, fetchers bound to different loopback
//! addresses (`[daemon] source_address`), a fault scoped to one of them, and the comparison of
//! `src/vantage.rs` over their verdicts; the outbound binding itself; and the rendered
//! `teewatch_vantage_*` families under `promtool check metrics`.

mod e2e;
mod metrics;
mod source_address;
