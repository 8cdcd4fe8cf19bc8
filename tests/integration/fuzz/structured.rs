//! Structure-aware mutations, so that mutants get past the outer format and
//! reach the checks behind it: JSON values (architectures, manifests, model
//! cards, safetensors headers), protobuf messages (ONNX) re-encoded with
//! correct lengths, and PNG chunks with their CRCs recomputed.

use super::mutate::{pick, Mutator, INTERESTING};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Number, Value};

// ---------------------------------------------------------------- JSON

/// Mutates one node of a JSON document: a number to an edge value, a string
/// to a dictionary string, a node deleted, duplicated, retyped, or replaced
/// by a node of another corpus document.
pub fn mutate_json(rng: &mut ChaCha8Rng, doc: &mut Value, donors: &[Value], strings: &[String]) {
    let count = count_nodes(doc);
    let target = rng.gen_range(0..count);
    let mut donor_nodes = Vec::new();
    if let Some(d) = pick(rng, donors) {
        collect_nodes(d, &mut donor_nodes);
    }
    let mut donor = pick(rng, &donor_nodes).map(|v| (*v).clone());
    let mut index = 0;
    visit_mut(doc, target, &mut index, &mut |node| {
        mutate_node(rng, node, donor.take(), strings)
    });
}

fn mutate_node(rng: &mut ChaCha8Rng, node: &mut Value, donor: Option<Value>, strings: &[String]) {
    match rng.gen_range(0..8) {
        0 | 1 => *node = edge_number(rng),
        2 => {
            *node = match pick(rng, strings) {
                Some(s) => Value::String(s.clone()),
                None => Value::String(String::new()),
            }
        }
        3 => {
            *node = match rng.gen_range(0..5) {
                0 => Value::Null,
                1 => Value::Bool(rng.gen()),
                2 => Value::Array(Vec::new()),
                3 => Value::Object(Map::new()),
                _ => Value::String("x".repeat(1 << rng.gen_range(0..12))),
            }
        }
        4 => {
            if let Some(d) = donor {
                *node = d;
            }
        }
        5 => match node {
            // Remove one member or element.
            Value::Object(m) if !m.is_empty() => {
                let i = rng.gen_range(0..m.len());
                if let Some(k) = m.keys().nth(i).cloned() {
                    m.remove(&k);
                }
            }
            Value::Array(a) if !a.is_empty() => {
                a.remove(rng.gen_range(0..a.len()));
            }
            _ => *node = Value::Null,
        },
        6 => match node {
            // Duplicate an element, or add a member.
            Value::Array(a) if !a.is_empty() => {
                let i = rng.gen_range(0..a.len());
                let copies = 1usize << rng.gen_range(0..6);
                let v = a[i].clone();
                for _ in 0..copies {
                    a.insert(i, v.clone());
                }
            }
            Value::Object(m) => {
                let key = pick(rng, strings).cloned().unwrap_or_default();
                m.insert(key, donor.unwrap_or_else(|| edge_number(rng)));
            }
            other => *other = Value::Array(vec![other.clone(), other.clone()]),
        },
        _ => {
            // Wrap in an array, or a number to its string.
            let new = match &*node {
                Value::Number(n) => Value::String(n.to_string()),
                other => Value::Array(vec![other.clone()]),
            };
            *node = new;
        }
    }
}

/// A number on an edge: 0, -1, 2^31, 2^53 + 1, u64::MAX, 1e308, 0.5, ...
fn edge_number(rng: &mut ChaCha8Rng) -> Value {
    match rng.gen_range(0..4) {
        0 => Value::Number(Number::from(
            INTERESTING[rng.gen_range(0..INTERESTING.len())],
        )),
        1 => Value::Number(Number::from(
            -(INTERESTING[rng.gen_range(0..INTERESTING.len())] as i64).saturating_abs(),
        )),
        2 => Value::Number(Number::from(rng.gen_range(0..64u64))),
        _ => {
            let f = [0.5, -0.0, 1e308, -1e308, 1e-310, 2.5, 1e19, -7.25][rng.gen_range(0..8)];
            Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
    }
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        Value::Object(m) => m.values().map(count_nodes).sum(),
        _ => 0,
    }
}

fn collect_nodes<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(v);
    match v {
        Value::Array(a) => a.iter().for_each(|c| collect_nodes(c, out)),
        Value::Object(m) => m.values().for_each(|c| collect_nodes(c, out)),
        _ => {}
    }
}

/// Calls `f` on the `target`-th node in pre-order.
fn visit_mut(v: &mut Value, target: usize, index: &mut usize, f: &mut dyn FnMut(&mut Value)) {
    if *index == target {
        f(v);
        *index += 1;
        return;
    }
    *index += 1;
    match v {
        Value::Array(a) => {
            for c in a {
                if *index > target {
                    return;
                }
                visit_mut(c, target, index, f);
            }
        }
        Value::Object(m) => {
            for c in m.values_mut() {
                if *index > target {
                    return;
                }
                visit_mut(c, target, index, f);
            }
        }
        _ => {}
    }
}

/// Every string of a document (keys and values): the dictionary of its
/// JSON mutations.
pub fn json_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|c| json_strings(c, out)),
        Value::Object(m) => {
            for (k, c) in m {
                out.push(k.clone());
                json_strings(c, out);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------- safetensors

/// A safetensors file split into its header (JSON) and data.
pub struct Safetensors {
    /// The header.
    pub header: Value,
    /// The bytes after the header.
    pub data: Vec<u8>,
}

impl Safetensors {
    /// Splits a safetensors file (`None` if its header is not JSON).
    pub fn split(bytes: &[u8]) -> Option<Self> {
        let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let end = 8usize.checked_add(usize::try_from(n).ok()?)?;
        let header = serde_json::from_slice(bytes.get(8..end)?).ok()?;
        Some(Self {
            header,
            data: bytes[end..].to_vec(),
        })
    }

    /// The file with `header`: the length prefix right, or (one time in
    /// eight) off by a little.
    pub fn join(rng: &mut ChaCha8Rng, header: &Value, data: &[u8]) -> Vec<u8> {
        let text = serde_json::to_vec(header).unwrap_or_default();
        let mut n = text.len() as u64;
        if rng.gen_ratio(1, 8) {
            n = n.wrapping_add(rng.gen_range(0..16)).wrapping_sub(8);
        }
        let mut out = n.to_le_bytes().to_vec();
        out.extend_from_slice(&text);
        out.extend_from_slice(data);
        out
    }
}

// ---------------------------------------------------------------- protobuf

/// A protobuf field, with length-delimited fields that parse as messages
/// kept as messages (so that their children can be mutated and the lengths
/// re-encoded).
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    /// Wire type 0.
    Varint(u64, u64),
    /// Wire type 1.
    Fixed64(u64, [u8; 8]),
    /// Wire type 5.
    Fixed32(u64, [u8; 4]),
    /// Wire type 2 that is not a message.
    Bytes(u64, Vec<u8>),
    /// Wire type 2 that parses as a message.
    Message(u64, Vec<Field>),
}

impl Field {
    fn number(&self) -> u64 {
        match self {
            Field::Varint(n, _)
            | Field::Fixed64(n, _)
            | Field::Fixed32(n, _)
            | Field::Bytes(n, _)
            | Field::Message(n, _) => *n,
        }
    }
}

fn read_varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *b.get(*i)?;
        *i += 1;
        if shift == 63 && byte > 1 {
            return None;
        }
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn write_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Parses a message; `None` if `b` is not one (nested messages deeper than
/// `depth` are kept as bytes).
pub fn parse_message(b: &[u8], depth: usize) -> Option<Vec<Field>> {
    let mut fields = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = read_varint(b, &mut i)?;
        let (number, wire) = (key >> 3, key & 7);
        if number == 0 || number > 1 << 29 {
            return None;
        }
        fields.push(match wire {
            0 => Field::Varint(number, read_varint(b, &mut i)?),
            1 => {
                let v = b.get(i..i + 8)?.try_into().ok()?;
                i += 8;
                Field::Fixed64(number, v)
            }
            5 => {
                let v = b.get(i..i + 4)?.try_into().ok()?;
                i += 4;
                Field::Fixed32(number, v)
            }
            2 => {
                let n = usize::try_from(read_varint(b, &mut i)?).ok()?;
                let body = b.get(i..i.checked_add(n)?)?;
                i += n;
                match (depth > 0 && !body.is_empty())
                    .then(|| parse_message(body, depth - 1))
                    .flatten()
                {
                    Some(m) => Field::Message(number, m),
                    None => Field::Bytes(number, body.to_vec()),
                }
            }
            _ => return None,
        });
    }
    Some(fields)
}

/// Encodes a message.
pub fn encode_message(fields: &[Field], out: &mut Vec<u8>) {
    for f in fields {
        let wire = match f {
            Field::Varint(..) => 0,
            Field::Fixed64(..) => 1,
            Field::Fixed32(..) => 5,
            Field::Bytes(..) | Field::Message(..) => 2,
        };
        write_varint((f.number() << 3) | wire, out);
        match f {
            Field::Varint(_, v) => write_varint(*v, out),
            Field::Fixed64(_, v) => out.extend_from_slice(v),
            Field::Fixed32(_, v) => out.extend_from_slice(v),
            Field::Bytes(_, v) => {
                write_varint(v.len() as u64, out);
                out.extend_from_slice(v);
            }
            Field::Message(_, m) => {
                let mut body = Vec::new();
                encode_message(m, &mut body);
                write_varint(body.len() as u64, out);
                out.extend_from_slice(&body);
            }
        }
    }
}

/// Mutates one field of a message tree: a varint to an edge value, a float
/// to NaN / inf / an edge, bytes (strings, raw data) by the byte mutator or
/// to a dictionary word, a field removed, duplicated, moved, or a message
/// replaced by one with the same field number from a donor tree.
pub fn mutate_message(
    rng: &mut ChaCha8Rng,
    msg: &mut Vec<Field>,
    donors: &[Vec<Field>],
    bytes: &Mutator<'_>,
) {
    let count = count_fields(msg);
    if count == 0 {
        msg.push(Field::Varint(rng.gen_range(1..20), rng.gen_range(0..4)));
        return;
    }
    let target = rng.gen_range(0..count);
    let mut index = 0;
    visit_fields(msg, target, &mut index, &mut |parent, i| {
        mutate_field(rng, parent, i, donors, bytes)
    });
}

fn mutate_field(
    rng: &mut ChaCha8Rng,
    parent: &mut Vec<Field>,
    i: usize,
    donors: &[Vec<Field>],
    bytes: &Mutator<'_>,
) {
    match rng.gen_range(0..10) {
        0 => {
            parent.remove(i);
            return;
        }
        1 => {
            let copies = 1usize << rng.gen_range(0..4);
            let f = parent[i].clone();
            for _ in 0..copies {
                parent.insert(i, f.clone());
            }
            return;
        }
        2 => {
            let j = rng.gen_range(0..parent.len());
            parent.swap(i, j);
            return;
        }
        3 => {
            // A same-numbered message from a donor (nodes, tensors, attributes across models).
            let number = parent[i].number();
            let mut same = Vec::new();
            for d in donors {
                collect_numbered(d, number, &mut same);
            }
            if let Some(f) = pick(rng, &same) {
                parent[i] = (*f).clone();
            }
            return;
        }
        _ => {}
    }
    match &mut parent[i] {
        Field::Varint(_, v) => {
            *v = match rng.gen_range(0..4) {
                0 => INTERESTING[rng.gen_range(0..INTERESTING.len())],
                1 => INTERESTING[rng.gen_range(0..INTERESTING.len())].wrapping_neg(),
                2 => v.wrapping_add(rng.gen_range(1..4)),
                _ => v.wrapping_sub(rng.gen_range(1..4)),
            }
        }
        Field::Fixed32(_, v) => {
            let f = [f32::NAN, f32::INFINITY, -1.0, 0.0, 1e30, 1e-40, 3.5][rng.gen_range(0..7)];
            *v = f.to_le_bytes();
        }
        Field::Fixed64(_, v) => {
            let f = [f64::NAN, f64::INFINITY, -1.0, 0.0, 1e300][rng.gen_range(0..5)];
            *v = f.to_le_bytes();
        }
        Field::Bytes(_, v) => {
            if rng.gen_ratio(1, 3) {
                if let Some(word) = pick(rng, bytes.dictionary) {
                    *v = word.clone();
                    return;
                }
            }
            bytes.mutate(rng, v);
        }
        Field::Message(n, m) => {
            if rng.gen_ratio(1, 4) {
                // Edit the encoded bytes of the whole message.
                let mut body = Vec::new();
                encode_message(m, &mut body);
                bytes.mutate(rng, &mut body);
                parent[i] = Field::Bytes(*n, body);
            } else {
                m.push(Field::Varint(
                    rng.gen_range(1..24),
                    rng.gen_range(0..1 << 20),
                ));
            }
        }
    }
}

fn count_fields(msg: &[Field]) -> usize {
    msg.iter()
        .map(|f| match f {
            Field::Message(_, m) => 1 + count_fields(m),
            _ => 1,
        })
        .sum()
}

fn collect_numbered<'a>(msg: &'a [Field], number: u64, out: &mut Vec<&'a Field>) {
    for f in msg {
        if f.number() == number && out.len() < 4096 {
            out.push(f);
        }
        if let Field::Message(_, m) = f {
            collect_numbered(m, number, out);
        }
    }
}

/// Calls `f(parent, i)` for the `target`-th field in pre-order.
fn visit_fields(
    msg: &mut Vec<Field>,
    target: usize,
    index: &mut usize,
    f: &mut dyn FnMut(&mut Vec<Field>, usize),
) -> bool {
    for i in 0..msg.len() {
        if *index == target {
            f(msg, i);
            return true;
        }
        *index += 1;
        if let Field::Message(_, m) = &mut msg[i] {
            if visit_fields(m, target, index, f) {
                return true;
            }
        }
    }
    false
}

// ---------------------------------------------------------------- PNG

/// The CRC-32 of PNG chunks (and zlib's), by `crc32fast`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Rewrites the CRC of every whole chunk of a PNG file.
pub fn fix_png_crcs(data: &mut [u8]) {
    let mut i = 8;
    while i + 12 <= data.len() {
        let len = u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]) as usize;
        let Some(end) = (i + 8).checked_add(len).filter(|&e| e + 4 <= data.len()) else {
            return;
        };
        let crc = crc32(&data[i + 4..end]);
        data[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        i = end + 4;
    }
}

/// The chunks of a PNG file after its signature, as `(start, end)` byte
/// ranges of whole chunks.
fn png_chunks(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 8;
    while i + 12 <= data.len() {
        let len = u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]) as usize;
        let Some(end) = (i + 12).checked_add(len).filter(|&e| e <= data.len()) else {
            break;
        };
        out.push((i, end));
        i = end;
    }
    out
}

/// Removes, duplicates or swaps whole chunks, or sets an IHDR field
/// (width, height, bit depth, colour type, interlace) to an edge value.
pub fn mutate_png_chunks(rng: &mut ChaCha8Rng, data: &mut Vec<u8>) {
    let chunks = png_chunks(data);
    let Some(&(a, b)) = pick(rng, &chunks) else {
        return;
    };
    match rng.gen_range(0..4) {
        0 => {
            data.drain(a..b);
        }
        1 => {
            let piece = data[a..b].to_vec();
            data.splice(b..b, piece);
        }
        2 => {
            if let Some(&(c, d)) = pick(rng, &chunks) {
                if d <= a {
                    let (first, second) = (data[c..d].to_vec(), data[a..b].to_vec());
                    data.splice(a..b, first);
                    data.splice(c..d, second);
                }
            }
        }
        _ => {
            if &data[12..16] == b"IHDR" && data.len() >= 8 + 8 + 13 {
                let field = rng.gen_range(0..5);
                let v = INTERESTING[rng.gen_range(0..INTERESTING.len())];
                match field {
                    0 | 1 => {
                        let at = 16 + 4 * field;
                        data[at..at + 4].copy_from_slice(&(v as u32).to_be_bytes());
                    }
                    // Bit depth, colour type, interlace method.
                    f => data[[24, 25, 28][f - 2]] = v as u8,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn protobuf_round_trips_byte_for_byte() {
        // field 1 varint 150, field 2 message { field 3 string "Conv" }, field 4 fixed32.
        let bytes = [
            0x08, 0x96, 0x01, 0x12, 0x06, 0x1a, 0x04, b'C', b'o', b'n', b'v', 0x25, 0, 0, 0x80,
            0x3f,
        ];
        let msg = parse_message(&bytes, 8).unwrap();
        assert_eq!(msg[0], Field::Varint(1, 150));
        assert_eq!(
            msg[1],
            Field::Message(2, vec![Field::Bytes(3, b"Conv".to_vec())])
        );
        assert_eq!(msg[2], Field::Fixed32(4, 1.0f32.to_le_bytes()));
        let mut out = Vec::new();
        encode_message(&msg, &mut out);
        assert_eq!(out, bytes);
        // A cut message is not one.
        assert!(parse_message(&bytes[..5], 8).is_none());
    }

    #[test]
    fn the_onnx_fixture_round_trips() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/onnx/ops_s.onnx"
        );
        let bytes = std::fs::read(path).unwrap();
        let msg = parse_message(&bytes, 32).unwrap();
        let mut out = Vec::new();
        encode_message(&msg, &mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn crc32_of_the_check_string_and_a_png_chunk() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\0IEND\0\0\0\0".to_vec();
        fix_png_crcs(&mut png);
        assert_eq!(&png[16..], &[0xAE, 0x42, 0x60, 0x82]);
    }

    #[test]
    fn safetensors_split_and_join_round_trip() {
        let mut bytes = Vec::new();
        let header = br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&1.5f32.to_le_bytes());
        let st = Safetensors::split(&bytes).unwrap();
        assert_eq!(st.header["w"]["shape"][0], 1);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut same = 0;
        for _ in 0..8 {
            let joined = Safetensors::join(&mut rng, &st.header, &st.data);
            if let Some(again) = Safetensors::split(&joined) {
                assert_eq!((&again.header, &again.data), (&st.header, &st.data));
                same += 1;
            }
        }
        assert!(same >= 4, "{same} of 8 rejoined with the right length");
    }

    #[test]
    fn json_mutations_change_one_node_and_stay_json() {
        let doc: Value =
            serde_json::from_str(r#"{"kind":"vgg","cfg":[8,"M"],"hidden":32}"#).unwrap();
        let mut strings = Vec::new();
        json_strings(&doc, &mut strings);
        assert_eq!(strings, ["cfg", "M", "hidden", "kind", "vgg"]);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut changed = 0;
        for _ in 0..100 {
            let mut m = doc.clone();
            mutate_json(&mut rng, &mut m, std::slice::from_ref(&doc), &strings);
            changed += usize::from(m != doc);
            assert!(serde_json::to_string(&m).is_ok());
        }
        assert!(changed > 70, "{changed}");
    }
}
