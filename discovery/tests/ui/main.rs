//! The discovery UI's tests, in one test binary so that the fixture and the
//! UI they share are compiled once: the JSON API and the incremental reader
//! (`api`), the page in headless Chromium (`browser`) and the reader on a
//! large bucket (`scale`).

#[path = "../common/mod.rs"]
mod common;

mod api;
mod browser;
mod scale;
