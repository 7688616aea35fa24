//! The JSON row streams: NDJSON (one value per line) and a top-level array (or Firebase's
//! `{"users":[…]}`), read one row at a time.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::ops::ControlFlow;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer as _;
use serde_json::value::RawValue;

use crate::{ImportRecord, RowError, SourceError};

/// Turns the JSON text of one row into a record.
pub(crate) trait RowParser {
    fn parse(&self, row: u64, json: &[u8]) -> Result<ImportRecord, RowError>;
}

pub(crate) type Sink<'a> = &'a mut dyn FnMut(Result<ImportRecord, RowError>) -> ControlFlow<()>;

const BUFFER: usize = 64 * 1024;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Skips a UTF-8 BOM and leading whitespace; returns the first other byte (not consumed) and
/// how many newlines were skipped.
pub(crate) fn skip_preamble<R: BufRead>(reader: &mut R) -> std::io::Result<(Option<u8>, u64)> {
    let buf = reader.fill_buf()?;
    if buf.starts_with(BOM) {
        reader.consume(BOM.len());
    }
    let mut newlines = 0;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok((None, newlines));
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(at) => {
                newlines += count_newlines(&buf[..at]);
                let first = buf[at];
                reader.consume(at);
                return Ok((Some(first), newlines));
            }
            None => {
                let len = buf.len();
                newlines += count_newlines(buf);
                reader.consume(len);
            }
        }
    }
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// `top_object`: the rows are the `users` array of a top-level object (Firebase); a top-level
/// array is accepted too. Otherwise `[` starts an array and anything else is NDJSON.
pub(crate) fn read_json<R: Read>(
    reader: R,
    parser: &dyn RowParser,
    top_object: bool,
    sink: Sink<'_>,
) -> Result<u64, SourceError> {
    let mut reader = BufReader::with_capacity(BUFFER, reader);
    let (first, newlines) = skip_preamble(&mut reader)?;
    match (first, top_object) {
        (None, _) => Ok(0),
        (Some(b'['), _) => read_array(reader, parser, false, sink),
        (Some(b'{'), true) => read_array(reader, parser, true, sink),
        (Some(other), true) => Err(SourceError::Malformed {
            row: 0,
            message: format!(
                "expected a JSON object with a \"users\" array, found {:?}",
                char::from(other)
            ),
        }),
        (Some(_), false) => read_ndjson(reader, parser, newlines, sink),
    }
}

fn read_ndjson<R: BufRead>(
    mut reader: R,
    parser: &dyn RowParser,
    mut line_no: u64,
    sink: Sink<'_>,
) -> Result<u64, SourceError> {
    let mut line = Vec::with_capacity(1024);
    let mut seen = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(seen);
        }
        line_no += 1;
        let content = line.trim_ascii();
        if content.is_empty() {
            continue;
        }
        seen += 1;
        if sink(parser.parse(line_no, content)).is_break() {
            return Ok(seen);
        }
    }
}

struct Rows<'a, 's> {
    parser: &'a dyn RowParser,
    sink: Sink<'s>,
    seen: u64,
    stopped: bool,
}

impl Rows<'_, '_> {
    /// Hands one element to the parser and the sink; `false` once the sink asked to stop.
    fn deliver(&mut self, raw: &RawValue) -> bool {
        self.seen += 1;
        let result = self.parser.parse(self.seen, raw.get().as_bytes());
        if (self.sink)(result).is_break() {
            self.stopped = true;
        }
        !self.stopped
    }
}

/// Visits the array of rows.
struct ArrayVisitor<'r, 'a, 's>(&'r mut Rows<'a, 's>);

impl<'de> Visitor<'de> for ArrayVisitor<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of users")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        // One element at a time, as its raw JSON text: a wrongly shaped element is the row
        // parser's business (a row error); only broken syntax fails here.
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            if !self.0.deliver(&raw) {
                // Leave the rest unread; the caller ignores the unfinished array.
                return Ok(());
            }
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for ArrayVisitor<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

/// Visits `{"users":[…], …}`, skipping other members.
struct UsersObjectVisitor<'r, 'a, 's>(&'r mut Rows<'a, 's>, &'r mut bool);

impl<'de> Visitor<'de> for UsersObjectVisitor<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with a \"users\" array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "users" {
                *self.1 = true;
                map.next_value_seed(ArrayVisitor(&mut *self.0))?;
                if self.0.stopped {
                    return Ok(());
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

fn read_array<R: Read>(
    reader: R,
    parser: &dyn RowParser,
    users_object: bool,
    sink: Sink<'_>,
) -> Result<u64, SourceError> {
    let mut rows = Rows {
        parser,
        sink,
        seen: 0,
        stopped: false,
    };
    let mut found_users = false;
    let mut de = serde_json::Deserializer::from_reader(reader);
    let result = if users_object {
        (&mut de).deserialize_map(UsersObjectVisitor(&mut rows, &mut found_users))
    } else {
        (&mut de).deserialize_seq(ArrayVisitor(&mut rows))
    };
    if rows.stopped {
        // The sink stopped us inside the array: what follows is deliberately unread.
        return Ok(rows.seen);
    }
    let result = result.and_then(|()| de.end());
    if let Err(e) = result {
        if e.is_io() {
            return Err(SourceError::Io(e.into()));
        }
        return Err(SourceError::Malformed {
            row: rows.seen + 1,
            message: e.to_string(),
        });
    }
    if users_object && !found_users {
        return Err(SourceError::Malformed {
            row: 0,
            message: "the top-level object has no \"users\" array".into(),
        });
    }
    Ok(rows.seen)
}
