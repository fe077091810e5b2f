//! Streams between a source and the repository: the compression and checksum pipeline
//! ([`store_object`], [`fetch_object`]), progress reporting ([`Progress`]), feeding a stored
//! object into a child program, and watching a tar stream go by.

mod feed;
mod pipeline;
mod progress;
mod tap;
mod tarwatch;

pub(crate) use feed::feed_child;
pub(crate) use pipeline::store_blocking;
pub use pipeline::{Codec, StoredObject, fetch_object, store_object};
pub use progress::{NoProgress, Progress};
pub(crate) use progress::{ProgressReader, ProgressWriter};
pub(crate) use tarwatch::TarWatch;
