//! Reading stage outputs back: the per-source summary, `grist inspect --verify`, a stage's own
//! figures and a run at a glance (`overview`), a document's way through a run (`why`), documents by
//! filter (`query`) and the run's HTML report.

pub mod overview;
pub mod query;
pub mod report;
pub mod summary;
pub mod verify;
pub mod why;
