//! TAP ioctls (`/dev/net/tun`). Reading and writing frames needs nothing
//! raw: `readv`/`writev` are std's vectored I/O on the `File`.

use super::cvt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

/// `struct ifreq` as TUNSETIFF reads it: the name and the flags member of
/// the union, padded to the full 40 bytes of the kernel's struct.
#[repr(C)]
pub(crate) struct IfReqFlags {
    pub(crate) name: [u8; libc::IFNAMSIZ],
    pub(crate) flags: libc::c_short,
    pub(crate) _pad: [u8; 40 - libc::IFNAMSIZ - 2],
}

const _: () = assert!(std::mem::size_of::<IfReqFlags>() == std::mem::size_of::<libc::ifreq>());

/// Opens one queue of the TAP `name` (created if it does not exist) with
/// `flags` (IFF_*), non-blocking; returns the file and the interface's
/// name as the kernel reports it. `name` must be shorter than IFNAMSIZ.
pub(crate) fn open_queue(name: &str, flags: libc::c_int) -> io::Result<(File, String)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: flags as libc::c_short,
        _pad: [0; 40 - libc::IFNAMSIZ - 2],
    };
    let n = name.len().min(libc::IFNAMSIZ - 1);
    req.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `req` has its
    // size and the layout of the members TUNSETIFF uses (name, then the
    // flags of the union), is NUL-terminated, and outlives the call.
    cvt(unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) })?;
    let end = req
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(req.name.len());
    let actual = String::from_utf8_lossy(&req.name[..end]).into_owned();
    Ok((file, actual))
}

/// An ioctl whose argument is a pointer to an `int` (TUNSETVNETHDRSZ,
/// TUNSETVNETLE).
fn ioctl_int_ptr(file: &File, req: libc::Ioctl, val: libc::c_int) -> io::Result<()> {
    let v = val;
    // SAFETY: these requests read one `int` through the pointer, which
    // points at `v`, alive for the call.
    cvt(unsafe { libc::ioctl(file.as_raw_fd(), req, &v as *const libc::c_int) })?;
    Ok(())
}

/// An ioctl whose argument is the value itself (TUNSETOFFLOAD,
/// TUNSETPERSIST take an `unsigned long`).
fn ioctl_ulong(file: &File, req: libc::Ioctl, val: libc::c_ulong) -> io::Result<()> {
    // SAFETY: these requests take their argument by value; no memory is
    // passed to the kernel.
    cvt(unsafe { libc::ioctl(file.as_raw_fd(), req, val) })?;
    Ok(())
}

/// Sets the virtio-net header length the TAP reads and writes.
pub(crate) fn set_vnet_hdr_sz(file: &File, len: usize) -> io::Result<()> {
    ioctl_int_ptr(file, libc::TUNSETVNETHDRSZ, len as libc::c_int)
}

/// Makes the virtio-net header little-endian whatever the host's order.
pub(crate) fn set_vnet_le(file: &File) -> io::Result<()> {
    ioctl_int_ptr(file, libc::TUNSETVNETLE, 1)
}

/// Tells the kernel which offloads (TUN_F_*) the reader of the TAP does.
pub(crate) fn set_offload(file: &File, flags: libc::c_uint) -> io::Result<()> {
    ioctl_ulong(file, libc::TUNSETOFFLOAD, libc::c_ulong::from(flags))
}

/// Makes the interface outlive (or not) its last open queue.
pub(crate) fn set_persist(file: &File, on: bool) -> io::Result<()> {
    ioctl_ulong(file, libc::TUNSETPERSIST, libc::c_ulong::from(on))
}
