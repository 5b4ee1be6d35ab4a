//! Rampart's policy engine.
