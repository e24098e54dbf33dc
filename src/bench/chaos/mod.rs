//! The parts of `vpsnap-chaos` that are not its main loop: the seeded fault mixes, what
//! every object said over the run (a watch), and the invariants checked against it and the
//! simulator's record.
pub mod history;
pub mod invariants;
pub mod mix;
