//! A minimal DER walker for the structures x509-cert does not model
//! (RFC 3161 timestamp tokens, CMS SignedData): tag, length, contents.

/// One DER element: its tag byte, its contents, and its whole encoding.
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub contents: &'a [u8],
    pub whole: &'a [u8],
}

pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const OID: u8 = 0x06;
pub const GENERALIZED_TIME: u8 = 0x18;

/// Reads the element at the start of `input`; returns it and the rest.
pub fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), String> {
    let short = || "truncated DER".to_string();
    let (&tag, rest) = input.split_first().ok_or_else(short)?;
    if tag & 0x1f == 0x1f {
        return Err("multi-byte DER tags are not used here".into());
    }
    let (&first, mut rest) = rest.split_first().ok_or_else(short)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err("bad DER length".into());
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        if len < 0x80 {
            return Err("non-minimal DER length".into());
        }
        len
    };
    if rest.len() < len {
        return Err(short());
    }
    let header = input.len() - rest.len();
    Ok((
        Tlv {
            tag,
            contents: &rest[..len],
            whole: &input[..header + len],
        },
        &rest[len..],
    ))
}

impl<'a> Tlv<'a> {
    /// The element, which must carry `tag`.
    pub fn expect(input: &'a [u8], tag: u8, what: &str) -> Result<(Tlv<'a>, &'a [u8]), String> {
        let (t, rest) = read(input).map_err(|e| format!("{what}: {e}"))?;
        if t.tag != tag {
            return Err(format!(
                "{what}: expected tag {tag:#04x}, found {:#04x}",
                t.tag
            ));
        }
        Ok((t, rest))
    }

    /// The elements inside a constructed element.
    pub fn children(&self) -> Result<Vec<Tlv<'a>>, String> {
        let mut out = Vec::new();
        let mut rest = self.contents;
        while !rest.is_empty() {
            let (t, r) = read(rest)?;
            out.push(t);
            rest = r;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths_and_refuses_truncation() {
        let (t, rest) = read(&[0x04, 0x02, 0xaa, 0xbb, 0x05]).expect("short form");
        assert_eq!(
            (t.tag, t.contents, rest),
            (0x04, &[0xaa, 0xbb][..], &[0x05][..])
        );
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([7u8; 0x80]);
        assert_eq!(read(&long).expect("long form").0.contents.len(), 0x80);
        assert!(read(&[0x04, 0x03, 1, 2]).is_err());
        assert!(
            read(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5]).is_err(),
            "non-minimal"
        );
    }
}
