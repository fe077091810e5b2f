//! The few OS calls the harness needs that `std` does not offer.
//!
//! `unsafe_code` is denied workspace-wide; each function here is tiny, allows it
//! locally and explains why the call is sound.

use std::ffi::CString;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The effective user id of this process.
#[allow(unsafe_code)]
pub(crate) fn geteuid() -> u32 {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

/// Looks up an OS user by name: `(uid, gid)`, or `None` if there is no such user.
#[allow(unsafe_code)]
pub(crate) fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let cname = CString::new(name).ok()?;
    let mut buf: Vec<libc::c_char> = vec![0; 16 * 1024];
    // SAFETY: `passwd` is a plain C struct of integers and pointers, for which
    // all-zeroes is a valid value; getpwnam_r only writes into `pwd`, `buf` (whose
    // real length we pass) and `result`, all of which outlive the call. We read
    // only the two integer fields afterwards, never the pointers into `buf`.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() {
            return None;
        }
        Some((pwd.pw_uid, pwd.pw_gid))
    }
}

/// Arranges for the child spawned by `cmd` to be SIGKILLed when the thread that
/// spawns it exits (Linux `PR_SET_PDEATHSIG`).
#[allow(unsafe_code)]
pub(crate) fn kill_when_parent_thread_exits(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec; it only calls
    // prctl (async-signal-safe) and does not allocate, lock or touch shared state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            ) == -1
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
