//! The fault drill: kill a router under load (or restart the broker) and prove from PostgreSQL
//! that nothing was lost or delivered twice, with the failover timeline and a verdict.
//!
//! * [`plan`]: what to do (scenario, routers, traffic, criteria);
//! * [`load`]: the traffic through the public API, recording every request's outcome;
//! * [`observe`]: the broker's member list and the group's lag, sampled while the drill runs;
//! * [`count`]: accepted vs delivered vs delivered twice, per recipient, from PostgreSQL;
//! * [`timeline`]: kill, detection, rebalance, first survivor processing, lag back to baseline;
//! * [`analysis`]: each kill's failover and a broker's outage, from what was observed;
//! * [`broker`]: the broker scenarios (kill the leader of a partition, rolling restart);
//! * [`stall`]: the producer's and the consumer's longest stall during a broker fault;
//! * [`report`]: the verdict and the report in Markdown and JSON;
//! * [`run`]: the scenarios.

pub mod analysis;
pub mod broker;
pub mod count;
pub mod load;
pub mod observe;
pub mod plan;
pub mod report;
pub mod run;
pub mod stall;
pub mod timeline;

pub use plan::{DrillPlan, KillMethod, Scenario};
pub use report::DrillReport;
pub use run::run;
