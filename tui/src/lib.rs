//! chat4all-tui: the live operations dashboard. Events become [`state::Action`]s, `update`
//! changes the [`state::State`], `ui::draw` renders it; data arrives from [`source`] on a
//! channel that keeps only the latest look. Every query and action goes through chat4all_ctl.

pub mod command;
pub mod config;
pub mod keys;
pub mod ops;
pub mod rows;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod terminal;
pub mod throughput;
pub mod ui;
