//! The browser client (work in progress).
