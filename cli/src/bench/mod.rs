//! The benchmark behind `proactor bench`: echo servers as processes, a load generator, a report.
#![allow(dead_code)]
