//! flowcast-serve (in progress).
