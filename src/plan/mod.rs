//! Pure planning: (provider list, declared objects, policy, limits, now) → actions.
//! Nothing here performs I/O, so every rule is covered by table and property tests.
pub mod breaker;
pub mod cron;
pub mod gc;
pub mod retention;
pub mod schedule;
