//! The raw kernel interfaces behind the device backends: every `unsafe`
//! block of the crate is here, one file per area, each with the reason it
//! is sound. The modules above see only safe functions and types that own
//! their file descriptors and mappings.

#![allow(unsafe_code)]

pub(crate) mod netlink;
pub(crate) mod netns;
pub(crate) mod packet;
pub(crate) mod tap;

use std::io;

/// A libc return value: `-1` means `errno` says what went wrong.
fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}
