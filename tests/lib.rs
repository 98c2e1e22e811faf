//! Workspace-level integration tests; the tests themselves are the
//! `[[test]]` targets (`guests/`, `replay/`), this library is empty.
