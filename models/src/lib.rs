//! flowcast-models (in progress).
