//! Reading the ramdisk: a cpio archive in the "newc" format (what
//! `boot --init` and Linux's initramfs tools write).

const MAGIC: &[u8] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpioError {
    /// Not a newc archive (bad magic).
    NotAnArchive,
    /// A header or entry runs past the end of the data.
    Truncated,
    /// A header field is not hexadecimal.
    BadField,
}

#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    pub name: &'a str,
    pub mode: u32,
    pub data: &'a [u8],
}

fn field(header: &[u8], index: usize) -> Result<usize, CpioError> {
    let text = &header[6 + index * 8..6 + index * 8 + 8];
    let text = core::str::from_utf8(text).map_err(|_| CpioError::BadField)?;
    usize::from_str_radix(text, 16).map_err(|_| CpioError::BadField)
}

/// The entries of `archive`, in order, up to the trailer.
pub fn entries(archive: &[u8]) -> impl Iterator<Item = Result<Entry<'_>, CpioError>> {
    let mut offset = 0usize;
    let mut done = false;
    core::iter::from_fn(move || {
        if done {
            return None;
        }
        let result = next_entry(archive, &mut offset);
        match &result {
            Ok(None) | Err(_) => done = true,
            Ok(Some(_)) => {}
        }
        result.transpose()
    })
}

fn next_entry<'a>(archive: &'a [u8], offset: &mut usize) -> Result<Option<Entry<'a>>, CpioError> {
    let header = archive.get(*offset..*offset + HEADER_LEN).ok_or(CpioError::Truncated)?;
    if &header[..6] != MAGIC {
        return Err(CpioError::NotAnArchive);
    }
    let mode = field(header, 1)? as u32;
    let size = field(header, 6)?;
    let name_size = field(header, 11)?;
    let name_start = *offset + HEADER_LEN;
    let name_bytes = archive.get(name_start..name_start + name_size).ok_or(CpioError::Truncated)?;
    let name =
        core::str::from_utf8(name_bytes.strip_suffix(&[0]).unwrap_or(name_bytes)).map_err(|_| CpioError::BadField)?;
    let data_start = (name_start + name_size).next_multiple_of(4);
    let data = archive.get(data_start..data_start + size).ok_or(CpioError::Truncated)?;
    *offset = (data_start + size).next_multiple_of(4);
    if name == TRAILER {
        return Ok(None);
    }
    Ok(Some(Entry { name, mode, data }))
}

/// The file at `path` ("/init", "init" and "./init" name the same file).
pub fn find<'a>(archive: &'a [u8], path: &str) -> Result<Option<Entry<'a>>, CpioError> {
    let wanted = path.trim_start_matches('/');
    for entry in entries(archive) {
        let entry = entry?;
        if entry.name.trim_start_matches("./").trim_start_matches('/') == wanted {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec::Vec;

    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut add = |name: &str, data: &[u8]| {
            let header = format!(
                "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
                1,
                0o100755,
                0,
                0,
                1,
                0,
                data.len(),
                0,
                0,
                0,
                0,
                name.len() + 1,
                0
            );
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            while out.len() % 4 != 0 {
                out.push(0);
            }
            out.extend_from_slice(data);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        };
        for (name, data) in files {
            add(name, data);
        }
        add(TRAILER, b"");
        out
    }

    #[test_case]
    fn finds_files_by_path() {
        let a = archive(&[("hello", b"hi"), ("init", b"\x7fELF...")]);
        let init = find(&a, "/init").unwrap().expect("init is there");
        assert_eq!(init.data, b"\x7fELF...");
        assert_eq!(init.mode, 0o100755);
        assert_eq!(find(&a, "hello").unwrap().unwrap().data, b"hi");
        assert!(find(&a, "/missing").unwrap().is_none());
    }

    #[test_case]
    fn rejects_garbage_and_truncation() {
        assert_eq!(find(b"not an archive at all, not at all, no.....................................................................................", "init").unwrap_err(), CpioError::NotAnArchive);
        let a = archive(&[("init", b"0123456789")]);
        assert_eq!(find(&a[..a.len() - 130], "init").unwrap_err(), CpioError::Truncated);
    }
}
