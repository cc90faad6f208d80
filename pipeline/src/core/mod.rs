//! The stage contract every step keeps, implemented once: the typed recipe, task slices, the
//! unit/marker/manifest runner, seeded per-document random streams and errors. Nothing here knows any particular step.

pub mod error;
pub mod extsort;
pub mod recipe;
pub mod rng;
pub mod slice;
pub mod stage;
