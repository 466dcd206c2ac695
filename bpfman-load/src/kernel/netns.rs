//! Network namespaces and interfaces, for the real kernel.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::{Interface, KernelError};

/// A bare name means `ip netns`'s /run/netns/NAME.
pub fn netns_path(ns: &Path) -> PathBuf {
    if ns.components().count() == 1 && !ns.is_absolute() {
        Path::new("/run/netns").join(ns)
    } else {
        ns.to_path_buf()
    }
}

/// Runs `f` on a thread inside the network namespace (a name under
/// /run/netns or a path), or here when there is none. The namespace is the
/// thread's alone, and ends with it.
pub(crate) fn in_netns<T: Send>(
    netns: Option<&Path>,
    f: impl FnOnce() -> Result<T, KernelError> + Send,
) -> Result<T, KernelError> {
    let Some(ns) = netns else { return f() };
    let path = netns_path(ns);
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(&path).map_err(|source| KernelError::NoNetns {
                name: ns.display().to_string(),
                path: path.clone(),
                source,
            })?;
            rustix::thread::move_into_link_name_space(
                file.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(|e| {
                KernelError::call(
                    "enter network namespace",
                    path.display().to_string(),
                    io::Error::from(e),
                )
            })?;
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(KernelError::call(
                "run in network namespace",
                ns.display().to_string(),
                "the thread panicked",
            ))
        })
    })
}

/// The interface's index, looked up inside its namespace.
pub(crate) fn interface(name: &str, netns: Option<&Path>) -> Result<Interface, KernelError> {
    let ifindex = in_netns(netns, || {
        let sock = rustix::net::socket(
            rustix::net::AddressFamily::INET,
            rustix::net::SocketType::DGRAM,
            None,
        )
        .map_err(|e| {
            KernelError::call("open a socket to look up", "interfaces", io::Error::from(e))
        })?;
        rustix::net::netdevice::name_to_index(&sock, name).map_err(|_| KernelError::NoInterface {
            name: name.to_string(),
            netns: netns.map(Path::to_path_buf),
        })
    })?;
    Ok(Interface {
        name: name.to_string(),
        ifindex,
        netns: netns.map(Path::to_path_buf),
    })
}
