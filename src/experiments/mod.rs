//! What an experiment decides for one device: pure rules, no I/O, no clock.
//!
//! - [`assign`]: the assignment hash of `PRODUCT.md` and the weighted pick;
//! - [`bandit`]: a bandit's update at a boundary (counts → the next period's weights);
//! - [`decide`]: automated decisions at an evaluation (promote, guardrails, SRM, timeout);
//! - [`decide_simulation`]: seeded whole runs through the analysis and [`decide`] (the
//!   proof of its false-promotion rate and its power);
//! - [`plan`]: an experiment ready for requests (which requests it applies to, what each
//!   state serves, its count handles);
//! - [`targeting`]: device classes (bots) and target conditions;
//! - [`sticky`]: the signed assignment cookie;
//! - [`device`]: the `device_id` cookie;
//! - [`qa`]: forced variants for QA;
//! - [`lifecycle`]: the allowed state transitions;
//! - [`goals`]: which requests and events convert, once per device, goal and run.
//!
//! May use `counting` (the count book's handles), `stats`, `config` and `util`; never tokio,
//! hyper, `std::net`, `std::fs` or a clock.

pub mod assign;
pub mod bandit;
pub mod decide;
pub mod decide_simulation;
pub mod device;
pub mod goals;
pub mod lifecycle;
pub mod plan;
pub mod qa;
pub mod sticky;
pub mod targeting;
