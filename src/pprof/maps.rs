//! The objects loaded into this process, from `/proc/self/maps`: the
//! mappings of an in-process profile.

#![forbid(unsafe_code)]

/// One executable mapping of a loaded object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MappedObject {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub limit: u64,
    /// Offset in the file of `start`.
    pub offset: u64,
    /// The object's path, or a name in brackets (`[vdso]`).
    pub path: String,
    /// The GNU build id in hex, or empty.
    pub build_id: String,
}

impl MappedObject {
    /// A mapping with a name and no addresses (for profiles of files).
    pub fn named(path: String) -> MappedObject {
        MappedObject { path, ..MappedObject::default() }
    }
}

/// The executable mappings of this process, the main binary's first; empty
/// where `/proc/self/maps` cannot be read.
pub fn self_mappings() -> Vec<MappedObject> {
    let Ok(text) = std::fs::read_to_string("/proc/self/maps") else { return Vec::new() };
    let exe = std::fs::read_link("/proc/self/exe").map(|p| p.display().to_string()).unwrap_or_default();
    let mut out = parse_maps(&text);
    // A stable sort keeps the main binary's segments in address order.
    out.sort_by_key(|m| m.path != exe);
    out
}

/// The executable, file-backed (or `[vdso]`) lines of a `maps` file:
/// `start-limit perms offset dev inode path`.
pub(crate) fn parse_maps(text: &str) -> Vec<MappedObject> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.splitn(6, ' ');
        let (Some(range), Some(perms), Some(offset), Some(_dev), Some(_inode)) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            continue;
        };
        let path = it.next().unwrap_or("").trim();
        if !perms.contains('x') || !(path.starts_with('/') || path == "[vdso]") {
            continue;
        }
        let Some((start, limit)) = range.split_once('-') else { continue };
        let hex = |s: &str| u64::from_str_radix(s, 16).ok();
        let (Some(start), Some(limit), Some(offset)) = (hex(start), hex(limit), hex(offset)) else { continue };
        out.push(MappedObject { start, limit, offset, path: path.to_owned(), build_id: String::new() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_executable_objects() {
        let text = "\
55d0c0a00000-55d0c0a10000 r--p 00000000 08:01 123 /usr/bin/app
55d0c0a10000-55d0c0a80000 r-xp 00010000 08:01 123 /usr/bin/app
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 [heap]
7f1000000000-7f1000100000 r-xp 00028000 08:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
7ffe00000000-7ffe00002000 r-xp 00000000 00:00 0 
";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 3);
        assert_eq!(maps[0].start, 0x55d0c0a10000);
        assert_eq!(maps[0].offset, 0x10000);
        assert_eq!(maps[1].path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(maps[2].path, "[vdso]");
    }

    #[test]
    fn this_process_first() {
        let maps = self_mappings();
        let exe = std::fs::read_link("/proc/self/exe").unwrap().display().to_string();
        assert_eq!(maps.first().map(|m| m.path.as_str()), Some(exe.as_str()));
    }
}
