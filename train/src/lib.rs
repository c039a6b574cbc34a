//! flowcast-train (in progress).
