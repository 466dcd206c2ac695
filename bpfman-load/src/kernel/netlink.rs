//! rtnetlink for the XDP hook, the way libxdp attaches its dispatchers:
//! what program is on an interface and in which mode (`RTM_GETLINK`), and
//! putting a program there or taking it off with one `RTM_SETLINK`
//! (`XDP_FLAGS_REPLACE` with the program expected there, so a change made
//! meanwhile by another tool fails instead of being overwritten).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::{Interface, KernelError, XdpMode};

const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;
const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));

const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_EXPECTED_FD: u16 = 8;

const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;
const XDP_ATTACHED_HW: u8 = 3;
const XDP_ATTACHED_MULTI: u8 = 4;

const XDP_FLAGS_UPDATE_IF_NOEXIST: u32 = 1;
const XDP_FLAGS_SKB_MODE: u32 = 2;
const XDP_FLAGS_DRV_MODE: u32 = 4;
const XDP_FLAGS_HW_MODE: u32 = 8;
const XDP_FLAGS_REPLACE: u32 = 16;

const EBUSY: i32 = 16;
const EEXIST: i32 = 17;

/// The XDP program on an interface, as netlink reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpAttached {
    pub program: u32,
    /// Driver, skb (generic) or hardware.
    pub mode: XdpMode,
}

fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut out = Vec::with_capacity(len.next_multiple_of(4));
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(len.next_multiple_of(4), 0);
    out
}

/// One rtnetlink link request for `ifindex` with `attrs`.
fn message(kind: u16, flags: u16, seq: u32, ifindex: u32, attrs: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDR + IFINFOMSG + attrs.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    // struct ifinfomsg: family, pad, type, index, flags, change.
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&ifindex.to_ne_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(attrs);
    out
}

/// The attributes in `buf`: (type without flags, payload).
fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((kind, &buf[4..len]));
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}

fn u32_of(p: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(p.get(..4)?.try_into().ok()?))
}

/// What an `RTM_NEWLINK` reply says is on the XDP hook.
fn parse_link(payload: &[u8]) -> Result<Option<XdpAttached>, String> {
    let Some(rest) = payload.get(IFINFOMSG..) else {
        return Err("short RTM_NEWLINK".into());
    };
    let Some((_, xdp)) = attrs(rest).into_iter().find(|(k, _)| *k == IFLA_XDP) else {
        return Ok(None);
    };
    let xdp = attrs(xdp);
    let attached = xdp
        .iter()
        .find(|(k, _)| *k == IFLA_XDP_ATTACHED)
        .and_then(|(_, p)| p.first().copied())
        .unwrap_or(0);
    let mode = match attached {
        0 => return Ok(None),
        XDP_ATTACHED_DRV => XdpMode::Driver,
        XDP_ATTACHED_SKB => XdpMode::Skb,
        XDP_ATTACHED_HW => XdpMode::Hw,
        XDP_ATTACHED_MULTI => {
            return Err(
                "programs are attached in several XDP modes at once (driver and generic); detach all but one"
                    .into(),
            );
        }
        other => return Err(format!("unknown XDP attach mode {other}")),
    };
    let program = xdp
        .iter()
        .find(|(k, _)| *k == IFLA_XDP_PROG_ID)
        .and_then(|(_, p)| u32_of(p))
        .ok_or("no program id in IFLA_XDP")?;
    Ok(Some(XdpAttached { program, mode }))
}

/// Sends one request and returns the payload of the reply to it: an
/// `RTM_NEWLINK`, or the acknowledgement (empty). A netlink error comes
/// back as its errno.
fn exchange(request: &[u8], seq: u32) -> io::Result<Vec<u8>> {
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};
    let sock = rustix::net::socket(AddressFamily::NETLINK, SocketType::RAW, None)?;
    // The kernel answers at once; a reply that never comes is an error,
    // not a hang.
    rustix::net::sockopt::set_socket_timeout(
        &sock,
        rustix::net::sockopt::Timeout::Recv,
        Some(std::time::Duration::from_secs(10)),
    )?;
    rustix::net::send(&sock, request, SendFlags::empty())?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (n, _) = rustix::net::recv(&sock, &mut buf[..], RecvFlags::empty())?;
        let mut msgs = &buf[..n];
        while msgs.len() >= NLMSG_HDR {
            let len = u32_of(msgs).unwrap_or(0) as usize;
            if len < NLMSG_HDR || len > msgs.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "malformed netlink reply",
                ));
            }
            let kind = u16::from_ne_bytes([msgs[4], msgs[5]]);
            let got = u32_of(&msgs[8..]).unwrap_or(0);
            let payload = &msgs[NLMSG_HDR..len];
            if got == seq {
                match kind {
                    NLMSG_ERROR => {
                        let err = u32_of(payload).map_or(0, |e| e as i32);
                        return if err == 0 {
                            Ok(Vec::new())
                        } else {
                            Err(io::Error::from_raw_os_error(-err))
                        };
                    }
                    RTM_NEWLINK => return Ok(payload.to_vec()),
                    _ => {}
                }
            }
            msgs = &msgs[len.next_multiple_of(4).min(msgs.len())..];
        }
    }
}

fn seq() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.subsec_nanos() | 1)
}

/// What is on `at`'s XDP hook (call inside its namespace).
pub(crate) fn query(at: &Interface) -> Result<Option<XdpAttached>, KernelError> {
    let seq = seq();
    let reply = exchange(
        &message(RTM_GETLINK, NLM_F_REQUEST, seq, at.ifindex, &[]),
        seq,
    )
    .map_err(|e| KernelError::call("ask netlink what XDP program is on", at.name.clone(), e))?;
    parse_link(&reply).map_err(|e| KernelError::call("read the XDP program on", at.name.clone(), e))
}

/// The `IFLA_XDP_FLAGS` mode bits for `mode` (none: the kernel picks
/// driver mode where the driver has it, else generic).
fn mode_flags(mode: XdpMode) -> u32 {
    match mode {
        XdpMode::Default => 0,
        XdpMode::Skb => XDP_FLAGS_SKB_MODE,
        XdpMode::Driver => XDP_FLAGS_DRV_MODE,
        XdpMode::Hw => XDP_FLAGS_HW_MODE,
    }
}

/// Puts `program` (none: nothing) on `at`'s XDP hook in `mode`, in one
/// request: replacing `expected` if given (the kernel refuses if another
/// program is there by then), else only if the hook is empty. Call inside
/// the interface's namespace.
pub(crate) fn set(
    at: &Interface,
    program: Option<BorrowedFd<'_>>,
    expected: Option<BorrowedFd<'_>>,
    mode: XdpMode,
) -> Result<(), KernelError> {
    let mut flags = mode_flags(mode);
    let mut nested = attr(
        IFLA_XDP_FD,
        &program.map_or(-1, |fd| fd.as_raw_fd()).to_ne_bytes(),
    );
    match expected {
        Some(fd) => {
            flags |= XDP_FLAGS_REPLACE;
            nested.extend(attr(IFLA_XDP_EXPECTED_FD, &fd.as_raw_fd().to_ne_bytes()));
        }
        None => flags |= XDP_FLAGS_UPDATE_IF_NOEXIST,
    }
    nested.extend(attr(IFLA_XDP_FLAGS, &flags.to_ne_bytes()));
    let attrs = attr(IFLA_XDP | NLA_F_NESTED, &nested);
    let seq = seq();
    let request = message(
        RTM_SETLINK,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        at.ifindex,
        &attrs,
    );
    exchange(&request, seq).map(drop).map_err(|e| {
        let what = match (e.raw_os_error(), expected.is_some()) {
            (Some(EEXIST), true) => format!(
                "{}: the program on its XDP hook changed while this change was prepared (another tool replaced it); run the command again",
                at.name
            ),
            (Some(EEXIST | EBUSY), false) => format!(
                "{}: its XDP hook holds a program already",
                at.name
            ),
            (Some(EBUSY), true) => format!(
                "{}: its XDP program is attached through a bpf_link, which netlink cannot replace",
                at.name
            ),
            _ => at.name.clone(),
        };
        KernelError::call("set the XDP program of", what, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setlink_request_nests_fd_expected_fd_and_flags_under_ifla_xdp() {
        let mut nested = attr(IFLA_XDP_FD, &7i32.to_ne_bytes());
        nested.extend(attr(IFLA_XDP_EXPECTED_FD, &9i32.to_ne_bytes()));
        nested.extend(attr(
            IFLA_XDP_FLAGS,
            &(XDP_FLAGS_REPLACE | XDP_FLAGS_DRV_MODE).to_ne_bytes(),
        ));
        let msg = message(
            RTM_SETLINK,
            NLM_F_REQUEST | NLM_F_ACK,
            5,
            3,
            &attr(IFLA_XDP | NLA_F_NESTED, &nested),
        );
        assert_eq!(u32_of(&msg), Some(msg.len() as u32));
        assert_eq!(u32_of(&msg[NLMSG_HDR + 4..]), Some(3), "ifindex");
        let top = attrs(&msg[NLMSG_HDR + IFINFOMSG..]);
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].0, IFLA_XDP);
        let inner = attrs(top[0].1);
        let get = |k| {
            inner
                .iter()
                .find(|(t, _)| *t == k)
                .and_then(|(_, p)| u32_of(p))
        };
        assert_eq!(get(IFLA_XDP_FD), Some(7));
        assert_eq!(get(IFLA_XDP_EXPECTED_FD), Some(9));
        assert_eq!(
            get(IFLA_XDP_FLAGS),
            Some(XDP_FLAGS_REPLACE | XDP_FLAGS_DRV_MODE)
        );
    }

    #[test]
    fn a_newlink_reply_tells_program_and_mode() {
        let mut xdp = attr(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_SKB]);
        xdp.extend(attr(IFLA_XDP_PROG_ID, &42u32.to_ne_bytes()));
        let mut payload = vec![0; IFINFOMSG];
        payload.extend(attr(3, b"veth0\0")); // IFLA_IFNAME first
        payload.extend(attr(IFLA_XDP | NLA_F_NESTED, &xdp));
        assert_eq!(
            parse_link(&payload),
            Ok(Some(XdpAttached {
                program: 42,
                mode: XdpMode::Skb
            }))
        );
        let empty = [
            vec![0; IFINFOMSG],
            attr(IFLA_XDP, &attr(IFLA_XDP_ATTACHED, &[0])),
        ]
        .concat();
        assert_eq!(parse_link(&empty), Ok(None));
        let multi = [
            vec![0; IFINFOMSG],
            attr(IFLA_XDP, &attr(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_MULTI])),
        ]
        .concat();
        assert!(parse_link(&multi).is_err());
    }
}
