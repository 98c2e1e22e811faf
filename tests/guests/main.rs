//! Guests played by smoltcp stacks (being written).
