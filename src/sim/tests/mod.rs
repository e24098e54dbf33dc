//! End-to-end tests over real HTTP on 127.0.0.1.

mod behaviour;
mod faults;
mod inspect;
mod support;
mod vps_rest;
mod zomro;
