//! A batch of addresses to frames, one streaming pass per compilation unit.
//!
//! Why not `addr2line`: asked about one address, it builds the unit's whole
//! line table (every row) and function tree (every function with all its
//! inlined calls) and keeps them, and it parses every unit's header, root
//! entry and line program header up front. On the benchmark's binary the
//! standard library's units made that about 22 MiB at the first snapshot's
//! peak (reports/symbolize.md). Here a batch's addresses are sorted and
//! grouped by unit (`.debug_aranges`, else the units' root ranges); each unit
//! is read once: its line program is run keeping only the rows the batch
//! asks about, its entries are walked once keeping only the functions and
//! inlined calls that cover an asked address, and nothing of it is kept when
//! the next unit starts (the caller drops its mapped pages too, see
//! `super::elf`). What is held is the answers.
//!
//! The answers are those `addr2line` gives (the same rules: the last row at
//! an address wins, line 0 is no line, inlined frames innermost first with
//! the caller's location taken from `DW_AT_call_file`/`DW_AT_call_line`,
//! names from the linkage name, else the name, else through
//! `DW_AT_abstract_origin`/`DW_AT_specification`, at most 16 deep; file
//! paths joined as it joins them). Where `addr2line` picks arbitrarily
//! (overlapping ranges) the first one met is taken.

#![forbid(unsafe_code)]

use super::elf::RawFrame;
use gimli::{AttributeValue, EndianSlice, RunTimeEndian};

pub(crate) type Slice = EndianSlice<'static, RunTimeEndian>;
type Unit = gimli::Unit<Slice>;
type UnitRef<'a> = gimli::UnitRef<'a, Slice>;
type Offset = gimli::DebugInfoOffset<usize>;

/// The DWARF sections of one object: slices of its map, nothing parsed.
pub(crate) struct Sections {
    dwarf: gimli::Dwarf<Slice>,
}

/// The location rows give: a file index of the unit's line program, a line.
#[derive(Clone, Copy)]
struct Row {
    file_index: u64,
    line: u32,
}

/// An inlined call covering an address: the callee's name and where the
/// caller called it.
struct Inlined {
    name: Option<String>,
    call_file: Option<u64>,
    call_line: u32,
}

/// The function (subprogram) covering an address, and the chain of inlined
/// calls inside it, outermost first.
struct Function {
    name: Option<String>,
    inlined: Vec<Inlined>,
}

/// Unit headers scanned between two drops of the mapped pages.
const UNITS_PER_DROP: usize = 64;

/// Names are followed through this many references at most (as `addr2line`).
const NAME_DEPTH: usize = 16;

impl Sections {
    pub(crate) fn new(dwarf: gimli::Dwarf<Slice>) -> Sections {
        Sections { dwarf }
    }

    /// The frames of each of `probes` (sorted, no duplicates), innermost
    /// inlined frame first; empty where the DWARF says nothing.
    /// `after_unit` runs when a unit is done with (to drop its pages).
    pub(crate) fn frames(&self, probes: &[u64], mut after_unit: impl FnMut()) -> Vec<Vec<RawFrame>> {
        debug_assert!(probes.windows(2).all(|w| w[0] < w[1]));
        let mut out: Vec<Vec<RawFrame>> = vec![Vec::new(); probes.len()];
        let units = self.units_of(probes, &mut after_unit);
        after_unit();
        // Probe indices grouped by unit, each group in address order.
        let mut order: Vec<usize> = (0..probes.len()).filter(|&i| units[i].is_some()).collect();
        order.sort_by_key(|&i| (units[i].map(|o| o.0), i));
        let mut start = 0;
        while start < order.len() {
            let Some(offset) = units[order[start]] else { break };
            let end = start + order[start..].iter().take_while(|&&i| units[i] == Some(offset)).count();
            let group = &order[start..end];
            let asked: Vec<u64> = group.iter().map(|&i| probes[i]).collect();
            match self.unit_frames(offset, &asked) {
                Ok(frames) => {
                    for (&i, f) in group.iter().zip(frames) {
                        out[i] = f;
                    }
                }
                Err(e) => log::debug!("leaktrace: unit at {:#x}: {e}", offset.0),
            }
            after_unit();
            start = end;
        }
        out
    }

    /// The unit each probe falls in: by `.debug_aranges`, then, for the
    /// probes left, by the root ranges of the units it does not list (as
    /// `addr2line` finds units: the table may miss some).
    fn units_of(&self, probes: &[u64], after_unit: &mut impl FnMut()) -> Vec<Option<Offset>> {
        let mut units: Vec<Option<Offset>> = vec![None; probes.len()];
        let mut listed: Vec<Offset> = Vec::new();
        let mut headers = self.dwarf.debug_aranges.headers();
        while let Ok(Some(header)) = headers.next() {
            let unit = header.debug_info_offset();
            listed.push(unit);
            let mut entries = header.entries();
            while let Ok(Some(entry)) = entries.next() {
                let r = entry.range();
                assign(probes, &mut units, r.begin, r.end, unit);
            }
        }
        if units.iter().all(Option::is_some) {
            return units;
        }
        listed.sort_unstable_by_key(|o| o.0);
        let mut headers = self.dwarf.units();
        let mut seen = 0usize;
        while let Ok(Some(header)) = headers.next() {
            seen += 1;
            // The headers are spread over all of `.debug_info`: a page
            // each, given back as the scan goes.
            if seen % UNITS_PER_DROP == 0 {
                after_unit();
            }
            let Some(offset) = header.debug_info_offset() else { continue };
            if listed.binary_search_by_key(&offset.0, |o| o.0).is_ok() {
                continue;
            }
            let Ok(unit) = self.dwarf.unit(header) else { continue };
            let Ok(mut ranges) = self.dwarf.unit_ranges(&unit) else { continue };
            while let Ok(Some(r)) = ranges.next() {
                assign(probes, &mut units, r.begin, r.end, offset);
            }
        }
        units
    }

    /// One unit's pass over its line program and its entries for `asked`
    /// (sorted addresses it covers).
    fn unit_frames(&self, offset: Offset, asked: &[u64]) -> gimli::Result<Vec<Vec<RawFrame>>> {
        let header = self.dwarf.debug_info.header_from_offset(offset)?;
        let unit = self.dwarf.unit(header)?;
        let unit = UnitRef::new(&self.dwarf, &unit);
        let rows = line_rows(unit, asked)?;
        let mut functions: Vec<Option<Function>> = (0..asked.len()).map(|_| None).collect();
        self.walk_functions(unit, asked, &mut functions)?;
        let comp_dir = unit.comp_dir.map(|d| d.to_string_lossy().into_owned());
        let file_at = |index: u64| file_name(unit, index);
        let location = |row: Option<Row>| match row {
            Some(r) => (file_at(r.file_index), r.line),
            None => (None, 0),
        };
        let mut out = Vec::with_capacity(asked.len());
        for (row, function) in rows.into_iter().zip(functions) {
            let mut frames = Vec::new();
            match function {
                Some(f) => {
                    let mut loc = location(row);
                    for call in f.inlined.into_iter().rev() {
                        let (file, line) = loc;
                        frames.push(RawFrame { function: call.name, file, comp_dir: comp_dir.clone(), line });
                        loc = (call.call_file.and_then(file_at), call.call_line);
                    }
                    let (file, line) = loc;
                    frames.push(RawFrame { function: f.name, file, comp_dir: comp_dir.clone(), line });
                }
                None if row.is_some() => {
                    let (file, line) = location(row);
                    frames.push(RawFrame { function: None, file, comp_dir: comp_dir.clone(), line });
                }
                None => {}
            }
            out.push(frames);
        }
        Ok(out)
    }

    /// Walks the unit's entries once: each subprogram covering an asked
    /// address (found among all the unit's entries, nested or not), and the
    /// inlined calls inside it that cover it.
    fn walk_functions(&self, unit: UnitRef<'_>, asked: &[u64], out: &mut [Option<Function>]) -> gimli::Result<()> {
        let mut entries = unit.entries_raw(None)?;
        let mut hits: Vec<usize> = Vec::new();
        while !entries.is_empty() {
            let depth = entries.next_depth();
            let Some(abbrev) = entries.read_abbreviation()? else { continue };
            if abbrev.tag() != gimli::DW_TAG_subprogram {
                entries.skip_attributes(abbrev.attributes())?;
                continue;
            }
            let die = Die::read(unit, &mut entries, abbrev)?;
            hits.clear();
            die.for_each_range(unit, |begin, end| {
                let (lo, hi) = span(asked, begin, end);
                hits.extend((lo..hi).filter(|&i| out[i].is_none()));
            })?;
            if hits.is_empty() {
                // Its children are read at this level: a subprogram nested
                // in it counts as one of the unit's.
                continue;
            }
            hits.sort_unstable();
            hits.dedup();
            let name = self.name(unit, &die, NAME_DEPTH);
            for &i in &hits {
                out[i] = Some(Function { name: name.clone(), inlined: Vec::new() });
            }
            self.walk_inlined(unit, &mut entries, depth, 0, asked, &hits, out)?;
        }
        Ok(())
    }

    /// The entries under a subprogram (or an inlined call) at `depth`: each
    /// inlined call `inlined_depth` deep that covers one of `hits` whose
    /// chain is that long extends its chain. Nested subprograms are skipped.
    #[allow(clippy::too_many_arguments)]
    fn walk_inlined(
        &self,
        unit: UnitRef<'_>,
        entries: &mut gimli::EntriesRaw<'_, Slice>,
        depth: isize,
        inlined_depth: usize,
        asked: &[u64],
        hits: &[usize],
        out: &mut [Option<Function>],
    ) -> gimli::Result<()> {
        loop {
            let next_depth = entries.next_depth();
            if next_depth <= depth {
                return Ok(());
            }
            let Some(abbrev) = entries.read_abbreviation()? else { continue };
            match abbrev.tag() {
                gimli::DW_TAG_subprogram => {
                    entries.skip_attributes(abbrev.attributes())?;
                    while entries.next_depth() > next_depth {
                        if let Some(a) = entries.read_abbreviation()? {
                            entries.skip_attributes(a.attributes())?;
                        }
                    }
                }
                gimli::DW_TAG_inlined_subroutine => {
                    let die = Die::read(unit, entries, abbrev)?;
                    let mut covered: Vec<usize> = Vec::new();
                    die.for_each_range(unit, |begin, end| {
                        for &i in hits {
                            let at_depth = out[i].as_ref().is_some_and(|f| f.inlined.len() == inlined_depth);
                            if at_depth && begin <= asked[i] && asked[i] < end && !covered.contains(&i) {
                                covered.push(i);
                            }
                        }
                    })?;
                    if !covered.is_empty() {
                        let name = self.name(unit, &die, NAME_DEPTH);
                        for &i in &covered {
                            if let Some(f) = out[i].as_mut() {
                                f.inlined.push(Inlined {
                                    name: name.clone(),
                                    call_file: die.call_file,
                                    call_line: die.call_line,
                                });
                            }
                        }
                    }
                    // Calls inlined into this one: only addresses it covers
                    // can be in them.
                    let inner: &[usize] = if covered.is_empty() { &[] } else { &covered };
                    self.walk_inlined(unit, entries, next_depth, inlined_depth + 1, asked, inner, out)?;
                }
                _ => entries.skip_attributes(abbrev.attributes())?,
            }
        }
    }

    /// A function's name: its linkage name, else its name, else the one of
    /// the entry it refers to.
    fn name(&self, unit: UnitRef<'_>, die: &Die, depth: usize) -> Option<String> {
        let raw = match &die.name {
            Some(n) => Some(n.clone()),
            None => self.name_at(unit, die.origin?, depth),
        };
        raw.map(|n| super::elf::demangle(&n))
    }

    fn name_at(&self, unit: UnitRef<'_>, reference: AttributeValue<Slice>, depth: usize) -> Option<String> {
        if depth == 0 {
            return None;
        }
        match reference {
            AttributeValue::UnitRef(at) => self.name_of_entry(unit, at, depth),
            AttributeValue::DebugInfoRef(dr) => {
                // Another unit's entry (after LTO): that unit's header and
                // abbreviations are read for it, then dropped.
                let header = self.unit_header_containing(dr)?;
                let at = dr.to_unit_offset(&header)?;
                let other: Unit = self.dwarf.unit(header).ok()?;
                self.name_of_entry(UnitRef::new(&self.dwarf, &other), at, depth)
            }
            _ => None,
        }
    }

    fn name_of_entry(&self, unit: UnitRef<'_>, at: gimli::UnitOffset<usize>, depth: usize) -> Option<String> {
        let mut entries = unit.entries_raw(Some(at)).ok()?;
        let abbrev = entries.read_abbreviation().ok()??;
        let die = Die::read(unit, &mut entries, abbrev).ok()?;
        match (die.name, die.origin) {
            (Some(n), _) => Some(n),
            (None, Some(next)) => self.name_at(unit, next, depth - 1),
            (None, None) => None,
        }
    }

    /// The header of the unit holding `.debug_info` offset `at`.
    fn unit_header_containing(&self, at: Offset) -> Option<gimli::UnitHeader<Slice>> {
        let mut headers = self.dwarf.units();
        let mut found = None;
        while let Ok(Some(h)) = headers.next() {
            match h.debug_info_offset() {
                Some(o) if o.0 <= at.0 => found = Some(h),
                _ => break,
            }
        }
        found
    }
}

/// Sets the unit of the probes in `[begin, end)` that have none yet.
fn assign(probes: &[u64], units: &mut [Option<Offset>], begin: u64, end: u64, unit: Offset) {
    let (lo, hi) = span(probes, begin, end);
    for u in &mut units[lo..hi] {
        u.get_or_insert(unit);
    }
}

/// The indices of the sorted `probes` in `[begin, end)`.
fn span(probes: &[u64], begin: u64, end: u64) -> (usize, usize) {
    if begin >= end {
        return (0, 0);
    }
    let lo = probes.partition_point(|&p| p < begin);
    let hi = lo + probes[lo..].partition_point(|&p| p < end);
    (lo, hi)
}

/// Runs the unit's line program once; for each of `asked` (sorted), the row
/// that covers it: the last row at the greatest address not above it, in
/// the sequence that contains it.
fn line_rows(unit: UnitRef<'_>, asked: &[u64]) -> gimli::Result<Vec<Option<Row>>> {
    let mut out: Vec<Option<Row>> = vec![None; asked.len()];
    let Some(program) = unit.line_program.clone() else { return Ok(out) };
    let mut rows = program.rows();
    // The pending row: the last one read, not yet known to end.
    let mut pending: Option<(u64, Row)> = None;
    let cover = |out: &mut [Option<Row>], begin: u64, end: u64, row: Row| {
        let (lo, hi) = span(asked, begin, end);
        for slot in &mut out[lo..hi] {
            slot.get_or_insert(row);
        }
    };
    while let Some((_, r)) = rows.next_row()? {
        let address = r.address();
        if r.end_sequence() {
            if let Some((begin, row)) = pending.take() {
                cover(&mut out, begin, address, row);
            }
            continue;
        }
        let row = Row { file_index: r.file_index(), line: r.line().map_or(0, |l| l.get() as u32) };
        match pending {
            // Several rows at one address: the last one says it.
            Some((begin, _)) if begin == address => pending = Some((begin, row)),
            Some((begin, prev)) => {
                cover(&mut out, begin, address, prev);
                pending = Some((address, row));
            }
            None => pending = Some((address, row)),
        }
    }
    Ok(out)
}

/// File `index` of the unit's line program as `addr2line` writes it:
/// `comp_dir`, the directory, the name, each joined unless absolute. Index
/// 0 of DWARF 4 and older is no file: the empty name.
fn file_name(unit: UnitRef<'_>, index: u64) -> Option<String> {
    let header = unit.line_program.as_ref()?.header();
    let Some(file) = header.file(index) else {
        return (index == 0).then(String::new);
    };
    let text = |v: AttributeValue<Slice>| -> Option<String> {
        unit.attr_string(v).ok().map(|s| s.to_string_lossy().into_owned())
    };
    let mut path = unit.comp_dir.map(|d| d.to_string_lossy().into_owned()).unwrap_or_default();
    if file.directory_index() != 0 {
        if let Some(dir) = file.directory(header) {
            path_push(&mut path, &text(dir)?);
        }
    }
    path_push(&mut path, &text(file.path_name())?);
    Some(path)
}

fn path_push(path: &mut String, p: &str) {
    let rooted = |s: &str| s.starts_with('/') || s.get(1..3) == Some(":/");
    let back_rooted = |s: &str| s.starts_with('\\') || s.get(1..3) == Some(":\\");
    if rooted(p) || back_rooted(p) {
        *path = p.to_string();
    } else {
        let sep = if back_rooted(path) { '\\' } else { '/' };
        if !path.is_empty() && !path.ends_with(sep) {
            path.push(sep);
        }
        path.push_str(p);
    }
}

/// What one subprogram or inlined-call entry says, its children not read.
#[derive(Default)]
struct Die {
    low_pc: Option<u64>,
    high_pc: Option<u64>,
    size: Option<u64>,
    ranges: Option<gimli::RangeListsOffset<usize>>,
    /// Linkage name, else name (demangled later).
    name: Option<String>,
    linkage: bool,
    origin: Option<AttributeValue<Slice>>,
    call_file: Option<u64>,
    call_line: u32,
}

impl Die {
    fn read(
        unit: UnitRef<'_>,
        entries: &mut gimli::EntriesRaw<'_, Slice>,
        abbrev: &gimli::Abbreviation,
    ) -> gimli::Result<Die> {
        let mut d = Die::default();
        let string = |v| unit.attr_string(v).ok().map(|s: Slice| s.to_string_lossy().into_owned());
        for spec in abbrev.attributes() {
            let attr = entries.read_attribute(*spec)?;
            match attr.name() {
                gimli::DW_AT_low_pc => match attr.value() {
                    AttributeValue::Addr(a) => d.low_pc = Some(a),
                    AttributeValue::DebugAddrIndex(i) => d.low_pc = Some(unit.address(i)?),
                    _ => {}
                },
                gimli::DW_AT_high_pc => match attr.value() {
                    AttributeValue::Addr(a) => d.high_pc = Some(a),
                    AttributeValue::DebugAddrIndex(i) => d.high_pc = Some(unit.address(i)?),
                    AttributeValue::Udata(n) => d.size = Some(n),
                    _ => {}
                },
                gimli::DW_AT_ranges => d.ranges = unit.attr_ranges_offset(attr.value())?,
                gimli::DW_AT_linkage_name | gimli::DW_AT_MIPS_linkage_name => {
                    if let Some(n) = string(attr.value()) {
                        d.name = Some(n);
                        d.linkage = true;
                    }
                }
                gimli::DW_AT_name if !d.linkage => {
                    if let Some(n) = string(attr.value()) {
                        d.name = Some(n);
                    }
                }
                gimli::DW_AT_abstract_origin | gimli::DW_AT_specification => d.origin = Some(attr.value()),
                gimli::DW_AT_call_file => {
                    if let AttributeValue::FileIndex(fi) = attr.value() {
                        if fi > 0 || unit.header.version() >= 5 {
                            d.call_file = Some(fi);
                        }
                    }
                }
                gimli::DW_AT_call_line => d.call_line = attr.udata_value().unwrap_or(0) as u32,
                _ => {}
            }
        }
        Ok(d)
    }

    /// Calls `f` with each non-empty `[begin, end)` the entry covers.
    fn for_each_range(&self, unit: UnitRef<'_>, mut f: impl FnMut(u64, u64)) -> gimli::Result<()> {
        let mut add = |begin: u64, end: u64| {
            if begin < end {
                f(begin, end);
            }
        };
        if let Some(offset) = self.ranges {
            let mut list = unit.ranges(offset)?;
            while let Some(r) = list.next()? {
                add(r.begin, r.end);
            }
        } else if let (Some(begin), Some(end)) = (self.low_pc, self.high_pc) {
            add(begin, end);
        } else if let (Some(begin), Some(size)) = (self.low_pc, self.size) {
            // A -1 tombstone wraps and is empty.
            add(begin, begin.wrapping_add(size));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::elf::DebugObject;
    use object::{Object, ObjectSection};

    /// `addr2line`'s frames at `probe`, as [`DebugObject::frames`] gives them.
    fn reference(ctx: &addr2line::Context<super::Slice>, probe: u64) -> Vec<(Option<String>, Option<String>, u32)> {
        let mut out = Vec::new();
        if let Ok(mut frames) = ctx.find_frames(probe).skip_all_loads() {
            while let Ok(Some(f)) = frames.next() {
                let function =
                    f.function.as_ref().and_then(|n| n.raw_name().ok()).map(|n| super::super::elf::demangle(&n));
                let (file, line) = match f.location {
                    Some(l) => (l.file.map(str::to_string), l.line.unwrap_or(0)),
                    None => (None, 0),
                };
                out.push((function, file, line));
            }
        }
        out
    }

    #[test]
    fn same_frames_as_addr2line_across_this_binary() {
        let exe = std::env::current_exe().unwrap();
        let bytes: &'static [u8] = Box::leak(std::fs::read(&exe).unwrap().into_boxed_slice());
        let file = object::File::parse(bytes).unwrap();
        let endian = gimli::RunTimeEndian::Little;
        let dwarf = gimli::Dwarf::load(|id| -> Result<super::Slice, gimli::Error> {
            let data = file.section_by_name(id.name()).and_then(|s| s.data().ok()).unwrap_or(&[]);
            Ok(gimli::EndianSlice::new(data, endian))
        })
        .unwrap();
        let ctx = addr2line::Context::from_dwarf(dwarf).unwrap();
        let text = file.section_by_name(".text").unwrap();
        // Thousands of addresses, all over the code: ours, std's, deps'.
        let probes: Vec<u64> = (text.address()..text.address() + text.size()).step_by(211).collect();
        let object = DebugObject::open(&exe, &[], &[]).unwrap();
        let ours = object.frames_of_all(&probes);
        let (mut same, mut inlined) = (0, 0);
        for (probe, got) in probes.iter().zip(&ours) {
            let want = reference(&ctx, *probe);
            let got: Vec<_> = got.iter().map(|f| (f.function.clone(), f.file.clone(), f.line)).collect();
            // Where addr2line finds nothing the symbol table names the
            // function; compare the DWARF's part only.
            if want.is_empty() {
                continue;
            }
            let mut got_dwarf = got.clone();
            if let (Some(g), Some(w)) = (got_dwarf.last_mut(), want.last()) {
                if w.0.is_none() {
                    g.0 = None;
                }
            }
            assert_eq!(got_dwarf, want, "at {probe:#x}");
            same += 1;
            inlined += usize::from(want.len() > 1);
        }
        assert!(same > 1000 && inlined > 100, "{same} compared, {inlined} with inlined frames");
    }
}
