//! Host tests: the model and property tests (`prop`), published versions
//! (`persist`), and 100,000-value trees (`scale`).

mod model;
mod persist;
mod prop;
mod scale;
