//! The edits the matrix rows make: bytes of a TDX quote, of GPU evidence and of JWTs, members of
//! JSON carried as a string, and event logs; each reads the evidence as the provider sent it and
//! writes it back in the same shape, so a row changes exactly one thing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

/// The JSON pointers of the parts of the bases.
pub const GW: &str = "/attestation/gateway_attestation";
pub const M0: &str = "/attestation/model_attestations/0";
pub const M1: &str = "/attestation/model_attestations/1";
pub const CM0: &str = "/attestation/model_attestations/0/compose_manager_attestation";
pub const TOP: &str = "/attestation";

// Offsets in a v4 TDX quote (Intel's DCAP quote layout): a 48-byte header, the 584-byte TD
// report body, the signature data length, then the ECDSA signature data.
pub const VERSION: usize = 0;
pub const ATT_KEY_TYPE: usize = 2;
pub const TEE_TYPE: usize = 4;
pub const QE_VENDOR: usize = 12;
pub const USER_DATA: usize = 28;
const BODY: usize = 48;
pub const TEE_TCB_SVN: usize = BODY;
pub const MRSEAM: usize = BODY + 16;
pub const MRSIGNERSEAM: usize = BODY + 64;
pub const SEAM_ATTRIBUTES: usize = BODY + 112;
pub const TD_ATTRIBUTES: usize = BODY + 120;
pub const XFAM: usize = BODY + 128;
pub const MRTD: usize = BODY + 136;
pub const MRCONFIGID: usize = BODY + 184;
pub const MROWNER: usize = BODY + 232;
pub const MROWNERCONFIG: usize = BODY + 280;
pub const RTMR0: usize = BODY + 328;
pub const RTMR3: usize = BODY + 472;
pub const REPORTDATA: usize = BODY + 520;
const SIG_DATA_LEN: usize = 632;
pub const QUOTE_SIGNATURE: usize = 636;
pub const ATTESTATION_KEY: usize = 700;
const OUTER_CERT_SIZE: usize = 766;
pub const QE_REPORT: usize = 770;
pub const QE_REPORT_SIGNATURE: usize = 1154;
const QE_AUTH_LEN: usize = 1218;
pub const QE_AUTH_DATA: usize = QE_AUTH_LEN + 2;

fn ptr<'a>(v: &'a mut Value, at: &str) -> &'a mut Value {
    v.pointer_mut(at)
        .unwrap_or_else(|| panic!("the base has no {at}"))
}

fn text(v: &mut Value, at: &str) -> String {
    ptr(v, at).as_str().unwrap().to_string()
}

/// Sets the value at `at`.
pub fn set(v: &mut Value, at: &str, value: Value) {
    *ptr(v, at) = value;
}

/// A copy of the value at `at`.
pub fn get(v: &Value, at: &str) -> Value {
    v.pointer(at)
        .unwrap_or_else(|| panic!("the base has no {at}"))
        .clone()
}

/// Edits the hex-encoded bytes at `at` (a quote, a signature, a CRL), keeping a `0x` prefix.
pub fn hex_edit(v: &mut Value, at: &str, f: impl FnOnce(&mut Vec<u8>)) {
    let old = text(v, at);
    let (prefix, digits) = old.split_at(if old.starts_with("0x") { 2 } else { 0 });
    let mut raw = hex::decode(digits).unwrap();
    f(&mut raw);
    set(
        v,
        at,
        Value::String(format!("{prefix}{}", hex::encode(raw))),
    );
}

/// Flips the low bit of byte `index` of the hex bytes at `at`.
pub fn hex_flip(v: &mut Value, at: &str, index: usize) {
    hex_edit(v, at, |raw| raw[index] ^= 0x01);
}

/// The quote of the part at `part` (`intel_quote`, or `quote` for a compose manager).
pub fn quote_ptr(v: &Value, part: &str) -> String {
    if v.pointer(&format!("{part}/intel_quote")).is_some() {
        format!("{part}/intel_quote")
    } else {
        format!("{part}/quote")
    }
}

/// Flips the low bit of byte `index` of the quote of `part`.
pub fn quote_flip(v: &mut Value, part: &str, index: usize) {
    quote_edit(v, part, |raw| raw[index] ^= 0x01);
}

/// Edits the quote of `part`. A dstack report that carries it twice (`intel_quote` and
/// `quote`) gets the same edit in both, as a provider would send them.
pub fn quote_edit(v: &mut Value, part: &str, f: impl FnOnce(&mut Vec<u8>)) {
    let at = quote_ptr(v, part);
    let twin = format!("{part}/quote");
    let both = at != twin && v.pointer(&twin).is_some() && v.pointer(&twin) == v.pointer(&at);
    hex_edit(v, &at, f);
    if both {
        let edited = get(v, &at);
        set(v, &twin, edited);
    }
}

/// The quote bytes of `part`.
pub fn quote_of(v: &Value, part: &str) -> Vec<u8> {
    let at = quote_ptr(v, part);
    hex::decode(v.pointer(&at).unwrap().as_str().unwrap()).unwrap()
}

/// Where the PCK certificate chain (PEM) sits in a v4 quote, and where its size is written.
fn pck_chain_span(raw: &[u8]) -> (usize, usize, usize) {
    let auth = u16::from_le_bytes([raw[QE_AUTH_LEN], raw[QE_AUTH_LEN + 1]]) as usize;
    let cert_type_at = QE_AUTH_LEN + 2 + auth;
    assert_eq!(
        u16::from_le_bytes([raw[cert_type_at], raw[cert_type_at + 1]]),
        5,
        "a pck chain"
    );
    let size_at = cert_type_at + 2;
    let size = u32::from_le_bytes(raw[size_at..size_at + 4].try_into().unwrap()) as usize;
    (size_at, size_at + 4, size_at + 4 + size)
}

/// The PEM PCK chain of a quote.
pub fn pck_chain(raw: &[u8]) -> Vec<u8> {
    let (_, start, end) = pck_chain_span(raw);
    raw[start..end].to_vec()
}

/// Puts `chain` in place of the quote's PCK chain, with every length that covers it rewritten.
pub fn replace_pck_chain(raw: &mut Vec<u8>, chain: &[u8]) {
    let (size_at, start, end) = pck_chain_span(raw);
    let grow = chain.len() as i64 - (end - start) as i64;
    raw.splice(start..end, chain.iter().copied());
    raw[size_at..size_at + 4].copy_from_slice(&(chain.len() as u32).to_le_bytes());
    for at in [SIG_DATA_LEN, OUTER_CERT_SIZE] {
        let old = u32::from_le_bytes(raw[at..at + 4].try_into().unwrap()) as i64;
        raw[at..at + 4].copy_from_slice(&((old + grow) as u32).to_le_bytes());
    }
}

/// Edits JSON carried as a string at `at` (`nvidia_payload`, `tcb_info`, collateral), written
/// back compact.
pub fn json_in_string(v: &mut Value, at: &str, f: impl FnOnce(&mut Value)) {
    let mut inner: Value = serde_json::from_str(&text(v, at)).unwrap();
    f(&mut inner);
    set(v, at, Value::String(serde_json::to_string(&inner).unwrap()));
}

/// The JSON carried as a string at `at`, parsed.
pub fn json_of(v: &Value, at: &str) -> Value {
    serde_json::from_str(v.pointer(at).unwrap().as_str().unwrap()).unwrap()
}

/// Edits text at `at` by replacing the first `from` with `to`; panics if `from` is absent, so a
/// row never passes by changing nothing.
pub fn replace_text(v: &mut Value, at: &str, from: &str, to: &str) {
    let old = text(v, at);
    assert!(old.contains(from), "{at} has no {from:?}");
    set(v, at, Value::String(old.replacen(from, to, 1)));
}

// ---- event logs -------------------------------------------------------------------------------

/// The event log of `part`, as a list whichever shape it came in.
pub fn events(v: &Value, part: &str) -> Vec<Value> {
    match v.pointer(&format!("{part}/event_log")).unwrap() {
        Value::String(text) => serde_json::from_str(text).unwrap(),
        Value::Array(list) => list.clone(),
        other => panic!("event_log is {other}"),
    }
}

/// Writes `list` back as `part`'s event log, in the shape the base used.
pub fn set_events(v: &mut Value, part: &str, list: &[Value]) {
    let at = format!("{part}/event_log");
    let value = match ptr(v, &at) {
        Value::String(_) => Value::String(serde_json::to_string(list).unwrap()),
        _ => Value::Array(list.to_vec()),
    };
    set(v, &at, value);
}

/// Edits `part`'s event log.
pub fn events_edit(v: &mut Value, part: &str, f: impl FnOnce(&mut Vec<Value>)) {
    let mut list = events(v, part);
    f(&mut list);
    set_events(v, part, &list);
}

/// The index of the imr-3 event named `name`.
pub fn index_of(list: &[Value], name: &str) -> usize {
    list.iter()
        .position(|e| e["event"] == name && e["imr"] == 3)
        .unwrap_or_else(|| panic!("no {name} event"))
}

/// Makes RTMR3 of `part`'s quote the replay of its event log, as a provider whose application
/// really extended RTMR3 would show (the quote's signature then no longer covers it).
pub fn rtmr3_from_replay(v: &mut Value, part: &str) {
    let text = serde_json::to_string(&events(v, part)).unwrap();
    let parsed = teewatch::verify::dstack::parse_event_log(&Value::String(text)).unwrap();
    // (quote_edit keeps a dstack report's two copies of the quote equal)
    let rtmr3 = teewatch::verify::dstack::replay(&parsed).rtmr[3];
    quote_edit(v, part, |raw| {
        raw[RTMR3..RTMR3 + 48].copy_from_slice(&rtmr3);
    });
}

// ---- GPU evidence ---------------------------------------------------------------------------

/// Edits the `nvidia_payload` of `part` (JSON carried as a string).
pub fn payload_edit(v: &mut Value, part: &str, f: impl FnOnce(&mut Value)) {
    json_in_string(v, &format!("{part}/nvidia_payload"), f);
}

/// Edits the SPDM bytes (request then signed measurement response) of GPU `gpu` of `part`.
pub fn spdm_edit(v: &mut Value, part: &str, gpu: usize, f: impl FnOnce(&mut Vec<u8>)) {
    payload_edit(v, part, |p| {
        let at = &mut p["evidence_list"][gpu]["evidence"];
        let mut raw = STANDARD.decode(at.as_str().unwrap()).unwrap();
        f(&mut raw);
        *at = Value::String(STANDARD.encode(raw));
    });
}

/// Offsets in SPDM evidence: the GET_MEASUREMENTS request (4-byte header, 32-byte nonce, slot)
/// and the MEASUREMENTS response after it (header, block count, record length, record, nonce,
/// opaque length, opaque data, signature).
pub struct Spdm {
    pub request_nonce: usize,
    pub record: usize,
    pub response_nonce: usize,
    pub opaque: usize,
    pub opaque_len: usize,
    pub signature: usize,
}

pub fn spdm_layout(raw: &[u8]) -> Spdm {
    let response = 37;
    let record_len =
        u32::from_le_bytes([raw[response + 5], raw[response + 6], raw[response + 7], 0]) as usize;
    let record = response + 8;
    let response_nonce = record + record_len;
    let opaque_len_at = response_nonce + 32;
    let opaque_len = u16::from_le_bytes([raw[opaque_len_at], raw[opaque_len_at + 1]]) as usize;
    let opaque = opaque_len_at + 2;
    Spdm {
        request_nonce: 4,
        record,
        response_nonce,
        opaque,
        opaque_len,
        signature: opaque + opaque_len,
    }
}

/// Flips a bit of the SPDM evidence of GPU `gpu` of `part`, at the offset `at` picks.
pub fn spdm_flip(v: &mut Value, part: &str, gpu: usize, at: fn(&Spdm) -> usize) {
    spdm_edit(v, part, gpu, |raw| {
        let layout = spdm_layout(raw);
        let i = at(&layout);
        raw[i] ^= 0x01;
    });
}

// ---- JWTs -----------------------------------------------------------------------------------

/// Edits one part (0 header, 1 claims, 2 signature) of the compact JWS at `at`, decoded.
pub fn jwt_edit(v: &mut Value, at: &str, part: usize, f: impl FnOnce(&mut Vec<u8>)) {
    let token = text(v, at);
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let mut raw = URL_SAFE_NO_PAD.decode(&parts[part]).unwrap();
    f(&mut raw);
    parts[part] = URL_SAFE_NO_PAD.encode(raw);
    set(v, at, Value::String(parts.join(".")));
}

/// Edits the decoded JSON of the header or the claims of the JWS at `at`, signature kept.
pub fn jwt_json(v: &mut Value, at: &str, part: usize, f: impl FnOnce(&mut Value)) {
    jwt_edit(v, at, part, |raw| {
        let mut json: Value = serde_json::from_slice(raw).unwrap();
        f(&mut json);
        *raw = serde_json::to_vec(&json).unwrap();
    });
}
