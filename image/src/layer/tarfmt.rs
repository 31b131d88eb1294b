//! A minimal deterministic tar writer: ustar headers with PAX extended records only where
//! ustar cannot hold a value (long names, big ids or sizes, xattrs). No user or group names,
//! no atime or ctime, fixed PAX header names, so equal input gives byte-identical archives.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

const BLOCK: usize = 512;

/// The type of a tar entry as rbuild writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    HardLink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

impl Kind {
    fn flag(self) -> u8 {
        match self {
            Kind::File => b'0',
            Kind::HardLink => b'1',
            Kind::Symlink => b'2',
            Kind::Char => b'3',
            Kind::Block => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
        }
    }
}

/// Everything written for one entry. `path` is relative, without a trailing slash.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub path: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub size: u64,
    pub link: Vec<u8>,
    pub dev_major: u64,
    pub dev_minor: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Entry {
    pub(crate) fn new(path: Vec<u8>, kind: Kind) -> Self {
        Self {
            path,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            link: Vec::new(),
            dev_major: 0,
            dev_minor: 0,
            xattrs: BTreeMap::new(),
        }
    }
}

/// Writes entries; [`TarWriter::finish`] writes the two zero blocks that end an archive.
#[derive(Debug)]
pub(crate) struct TarWriter<W: Write> {
    out: W,
}

/// Fits `value` as zero-padded octal into a field of `width` bytes (last byte NUL).
fn octal(field: &mut [u8], value: u64) -> bool {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    if s.len() > digits {
        return false;
    }
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
    true
}

/// One PAX record: "<len> <key>=<value>\n", where len counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = key.len() + value.len() + 3; // space, '=', newline
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Splits a path into ustar prefix and name fields, if it fits.
fn split_ustar(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((&[], path));
    }
    // The prefix must end at a '/', which is dropped; the rest must fit the name field.
    path.iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'/' && i <= 155 && path.len() - i - 1 <= 100 && i + 1 < path.len())
        .map(|(i, _)| (&path[..i], &path[i + 1..]))
        .next()
}

fn checksum(header: &mut [u8; BLOCK]) {
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(s.as_bytes());
}

fn ustar_header(name_path: &[u8], kind_flag: u8, e: &Entry, pax: &mut Vec<u8>) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    match split_ustar(name_path) {
        Some((prefix, name)) => {
            h[..name.len()].copy_from_slice(name);
            h[345..345 + prefix.len()].copy_from_slice(prefix);
        }
        None => {
            pax_record(pax, "path", name_path);
            h[..100].copy_from_slice(&name_path[..100]);
        }
    }
    octal(&mut h[100..108], u64::from(e.mode & 0o7777));
    if !octal(&mut h[108..116], e.uid) {
        pax_record(pax, "uid", e.uid.to_string().as_bytes());
        octal(&mut h[108..116], 0);
    }
    if !octal(&mut h[116..124], e.gid) {
        pax_record(pax, "gid", e.gid.to_string().as_bytes());
        octal(&mut h[116..124], 0);
    }
    if !octal(&mut h[124..136], e.size) {
        pax_record(pax, "size", e.size.to_string().as_bytes());
        octal(&mut h[124..136], 0);
    }
    // Times before 1970 are clamped to the epoch: ustar cannot hold them and they carry no
    // meaning in an image.
    let mtime = u64::try_from(e.mtime).unwrap_or(0);
    if !octal(&mut h[136..148], mtime) {
        pax_record(pax, "mtime", mtime.to_string().as_bytes());
        octal(&mut h[136..148], 0);
    }
    h[156] = kind_flag;
    if e.link.len() <= 100 {
        h[157..157 + e.link.len()].copy_from_slice(&e.link);
    } else {
        pax_record(pax, "linkpath", &e.link);
        h[157..257].copy_from_slice(&e.link[..100]);
    }
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    if matches!(e.kind, Kind::Char | Kind::Block) {
        if !octal(&mut h[329..337], e.dev_major) || !octal(&mut h[337..345], e.dev_minor) {
            // Linux device numbers fit 12 and 20 bits; 7 octal digits hold 21 bits.
            octal(&mut h[329..337], 0);
            octal(&mut h[337..345], 0);
        }
    } else {
        octal(&mut h[329..337], 0);
        octal(&mut h[337..345], 0);
    }
    h
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        Self { out }
    }

    /// Appends one entry; `data` must yield exactly `entry.size` bytes for regular files.
    pub(crate) fn append(&mut self, e: &Entry, data: Option<&mut dyn Read>) -> io::Result<()> {
        let mut path = e.path.clone();
        if e.kind == Kind::Dir {
            path.push(b'/');
        }
        let mut pax = Vec::new();
        let mut header = ustar_header(&path, e.kind.flag(), e, &mut pax);
        for (k, v) in &e.xattrs {
            pax_record(&mut pax, &format!("SCHILY.xattr.{k}"), v);
        }
        if !pax.is_empty() {
            let holder = Entry {
                size: pax.len() as u64,
                ..Entry::new(Vec::new(), Kind::File)
            };
            let mut ph = ustar_header(b"././@PaxHeader", b'x', &holder, &mut Vec::new());
            checksum(&mut ph);
            self.out.write_all(&ph)?;
            self.out.write_all(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        checksum(&mut header);
        self.out.write_all(&header)?;
        if e.kind == Kind::File && e.size > 0 {
            let data = data.ok_or_else(|| io::Error::other("regular file without data"))?;
            let copied = io::copy(&mut data.take(e.size), &mut self.out)?;
            if copied != e.size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while it was archived",
                ));
            }
            self.pad(e.size)?;
        }
        Ok(())
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; BLOCK * 2])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Path, PAX records and data of each entry.
    type ReadBack = Vec<(String, Vec<(String, Vec<u8>)>, Vec<u8>)>;

    fn read_back(bytes: &[u8]) -> ReadBack {
        let mut ar = tar::Archive::new(bytes);
        let mut out = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let pax = e
                .pax_extensions()
                .unwrap()
                .into_iter()
                .flatten()
                .map(|ext| {
                    let ext = ext.unwrap();
                    (ext.key().unwrap().to_owned(), ext.value_bytes().to_vec())
                })
                .collect();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            out.push((path, pax, data));
        }
        out
    }

    #[test]
    fn pax_record_length_counts_itself() {
        let mut v = Vec::new();
        pax_record(&mut v, "path", &[b'a'; 94]);
        // 3 digits + space + "path=" + 94 + newline = 104
        assert!(v.starts_with(b"104 path="));
        assert_eq!(v.len(), 104);
        // Across the 9/10 and 99/100 digit-count boundaries the prefix still counts itself.
        for n in 0..1100 {
            let mut v = Vec::new();
            pax_record(&mut v, "k", &vec![b'x'; n]);
            let len: usize = std::str::from_utf8(&v[..v.iter().position(|&b| b == b' ').unwrap()])
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, v.len(), "value length {n}");
        }
        let mut v = Vec::new();
        pax_record(&mut v, "k", b"v");
        assert_eq!(v, b"6 k=v\n");
    }

    #[test]
    fn long_names_links_and_xattrs_read_back() {
        let long = format!("{}/{}", "d".repeat(150), "f".repeat(120));
        let mut w = TarWriter::new(Vec::new());
        let mut e = Entry::new(long.clone().into_bytes(), Kind::File);
        e.size = 3;
        e.mode = 0o4755;
        e.uid = 1 << 40;
        e.xattrs.insert("user.b".into(), b"2".to_vec());
        e.xattrs.insert("user.a".into(), b"1".to_vec());
        w.append(&e, Some(&mut &b"abc"[..])).unwrap();
        let mut s = Entry::new(b"short/ok".to_vec(), Kind::Symlink);
        s.link = "t".repeat(130).into_bytes();
        w.append(&s, None).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 512, 0);
        let back = read_back(&bytes);
        assert_eq!(back[0].0, long);
        assert_eq!(back[0].2, b"abc");
        let keys: Vec<&str> = back[0].1.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["path", "uid", "SCHILY.xattr.user.a", "SCHILY.xattr.user.b"]
        );
        let mut ar = tar::Archive::new(&bytes[..]);
        let entries: Vec<_> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().clone())
            .collect();
        assert_eq!(entries[0].mode().unwrap(), 0o4755);
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut it = ar.entries().unwrap();
        it.next();
        let link = it.next().unwrap().unwrap();
        assert_eq!(
            link.link_name().unwrap().unwrap().to_string_lossy(),
            "t".repeat(130)
        );
    }

    #[test]
    fn ustar_prefix_split_is_used_when_possible() {
        let path = format!("{}/{}", "p".repeat(120), "n".repeat(50));
        let (prefix, name) = split_ustar(path.as_bytes()).unwrap();
        assert_eq!(prefix.len(), 120);
        assert_eq!(name.len(), 50);
        assert!(split_ustar("x".repeat(101).as_bytes()).is_none());
    }
}
