//! Workspace-level integration tests live here as the I/O and control plane arrive (issues 4 and 5).
