//! Reading stage outputs back: the per-source summary, `grist inspect --verify` and the
//! run's HTML report.

pub mod report;
pub mod summary;
pub mod verify;
