//! flowcast datasets: the canonical event/book model every other crate consumes, the loaders that
//! map real sources into it, the Parquet store and the synthetic generator.
//!
//! One model, one replay: never parse or rebuild a book a second way downstream.

pub mod analysis;
pub mod bench;
pub mod book;
pub mod error;
pub mod event;
pub mod features;
pub mod features_io;
pub mod info;
pub mod instrument;
pub mod labels;
pub mod loaders;
pub mod normalize;
pub mod prepare;
pub mod report;
pub mod snapshot;
pub mod source;
pub mod splits;
pub mod store;
pub mod synth;
pub mod time;

pub use book::{BTreeBook, BookLayout, DenseBook, OrderBook, TopN, VecBook, NO_PRICE};
pub use error::{BadLines, DataError, Result};
pub use event::{flags, Event, EventKind, Side, NO_TS};
pub use instrument::Instrument;
pub use report::Report;
pub use store::{read_dataset, write_dataset, Dataset, DatasetMeta};
