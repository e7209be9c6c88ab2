//! The TCB info (v3, "TDX") and QE identity (v2, "TD_QE") JSON the test PCCS signs.
//!
//! The shapes are Intel PCS v4's: dcap-qvl deserialises them into its `TcbInfo` and `QeIdentity`
//! and verifies the signature over the exact bytes of the JSON object, so each document is
//! serialised once, compactly, and the same string is signed, put in the collateral and served.
//! serde_json is built with `preserve_order`, so a client that parses the served body and prints
//! the object again gets these bytes back.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::{
    CPU_SVN, OUT_OF_DATE_ADVISORY, PCE_ID, PCE_SVN, QE_IDENTITY_ATTRIBUTES, QE_ISVPRODID,
    QE_ISVSVN, QE_MRSIGNER, SimError, TCB_EVALUATION_DATA_NUMBER, TEE_TCB_SVN, TcbStatusChoice,
};

/// Intel's labels for the SGX TCB components that carry one, by index.
const SGX_LABELS: [(usize, &str, Option<&str>); 7] = [
    (0, "BIOS", Some("Early Microcode Update")),
    (1, "OS/VMM", Some("SGX Late Microcode Update")),
    (2, "OS/VMM", Some("TXT SINIT")),
    (3, "BIOS", None),
    (4, "BIOS", None),
    (5, "BIOS", None),
    (7, "OS/VMM", Some("SEAMLDR ACM")),
];

/// Intel's labels for the TDX TCB components that carry one, by index.
const TDX_LABELS: [(usize, &str, Option<&str>); 3] = [
    (0, "OS/VMM", Some("TDX Module")),
    (1, "OS/VMM", Some("TDX Module")),
    (2, "OS/VMM", Some("TDX Late Microcode Update")),
];

/// The all-zero (48-byte) TDX module signer Intel publishes: Intel signs the module with no
/// MRSIGNERSEAM.
const MODULE_MRSIGNER: &str = concat!(
    "000000000000000000000000000000000000000000000000",
    "000000000000000000000000000000000000000000000000",
);

pub(super) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A TCB date: midnight UTC `days` before `now`, as Intel dates its levels.
fn tcb_date(now: DateTime<Utc>, days: i64) -> String {
    (now - Duration::days(days))
        .format("%Y-%m-%dT00:00:00Z")
        .to_string()
}

fn components(svns: &[u8; 16], labels: &[(usize, &str, Option<&str>)]) -> Value {
    let list: Vec<Value> = svns
        .iter()
        .enumerate()
        .map(|(i, svn)| match labels.iter().find(|(at, _, _)| *at == i) {
            Some((_, category, Some(kind))) => {
                json!({"svn": svn, "category": category, "type": kind})
            }
            Some((_, category, None)) => json!({"svn": svn, "category": category}),
            None => json!({"svn": svn}),
        })
        .collect();
    Value::Array(list)
}

fn level(
    cpu_svn: &[u8; 16],
    pce_svn: u16,
    tdx_svn: &[u8; 16],
    date: String,
    status: &str,
    advisories: &[&str],
) -> Value {
    let mut level = json!({
        "tcb": {
            "sgxtcbcomponents": components(cpu_svn, &SGX_LABELS),
            "pcesvn": pce_svn,
            "tdxtcbcomponents": components(tdx_svn, &TDX_LABELS),
        },
        "tcbDate": date,
        "tcbStatus": status,
    });
    // Intel omits advisoryIDs on levels without advisories.
    if let (false, Some(object)) = (advisories.is_empty(), level.as_object_mut()) {
        object.insert("advisoryIDs".into(), json!(advisories));
    }
    level
}

/// The TCB info for a simulated platform's `fmspc` with the level the platform sits on set to
/// `status` (every simulated platform has the same TCB components).
pub(super) fn tcb_info(
    fmspc: &[u8; 6],
    status: TcbStatusChoice,
    issued: DateTime<Utc>,
    next_update: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<String, SimError> {
    // Platform levels compare TDX components 2.. only (0 and 1 belong to the module identity
    // while the module version TEE_TCB_SVN[1] is non-zero); component 1 is left at zero so a body
    // that reports module version 0 still meets the level.
    let mut tdx_svn = [0u8; 16];
    for (i, slot) in tdx_svn.iter_mut().enumerate() {
        if i != 1 {
            *slot = TEE_TCB_SVN.get(i).copied().unwrap_or(0);
        }
    }
    let ours = level(
        &CPU_SVN,
        PCE_SVN,
        &tdx_svn,
        tcb_date(now, 120),
        status.as_str(),
        match status {
            TcbStatusChoice::UpToDate => &[],
            TcbStatusChoice::OutOfDate | TcbStatusChoice::Revoked => &[OUT_OF_DATE_ADVISORY],
        },
    );
    // An older level (lower PCESVN) the platform also meets; dcap-qvl must pick ours first.
    let older = level(
        &CPU_SVN,
        PCE_SVN.saturating_sub(6),
        &tdx_svn,
        tcb_date(now, 730),
        "OutOfDate",
        &["INTEL-SA-00998", OUT_OF_DATE_ADVISORY],
    );
    let mut levels = Vec::with_capacity(3);
    if status != TcbStatusChoice::UpToDate {
        // A newer microcode level the platform does not meet, which is what makes it out of date.
        let mut newer_cpu = CPU_SVN;
        for svn in newer_cpu.iter_mut().take(2) {
            *svn = svn.saturating_add(1);
        }
        levels.push(level(
            &newer_cpu,
            PCE_SVN.saturating_add(2),
            &tdx_svn,
            tcb_date(now, 30),
            "UpToDate",
            &[],
        ));
    }
    levels.push(ours);
    levels.push(older);

    let module_level = |isvsvn: u8, date: String, status: &str, advisories: &[&str]| {
        let mut l = json!({"tcb": {"isvsvn": isvsvn}, "tcbDate": date, "tcbStatus": status});
        if let (false, Some(object)) = (advisories.is_empty(), l.as_object_mut()) {
            object.insert("advisoryIDs".into(), json!(advisories));
        }
        l
    };
    let module_svn = TEE_TCB_SVN.first().copied().unwrap_or(0);
    let module_version = TEE_TCB_SVN.get(1).copied().unwrap_or(0);
    let identity = |version: u8, levels: Vec<Value>| {
        json!({
            "id": format!("TDX_{version:02X}"),
            "mrsigner": MODULE_MRSIGNER,
            "attributes": "0000000000000000",
            "attributesMask": "FFFFFFFFFFFFFFFF",
            "tcbLevels": levels,
        })
    };
    let info = json!({
        "id": "TDX",
        "version": 3,
        "issueDate": rfc3339(issued),
        "nextUpdate": rfc3339(next_update),
        "fmspc": hex::encode_upper(fmspc),
        "pceId": hex::encode_upper(PCE_ID),
        "tcbType": 0,
        "tcbEvaluationDataNumber": TCB_EVALUATION_DATA_NUMBER,
        "tdxModule": {
            "mrsigner": MODULE_MRSIGNER,
            "attributes": "0000000000000000",
            "attributesMask": "FFFFFFFFFFFFFFFF",
        },
        "tdxModuleIdentities": [
            // The identity the simulated module (TEE_TCB_SVN[1]) is judged by: its ISVSVN meets
            // the UpToDate level, so the module never lowers the platform status.
            identity(module_version, vec![
                module_level(module_svn, tcb_date(now, 120), "UpToDate", &[]),
                module_level(
                    module_svn.saturating_sub(2),
                    tcb_date(now, 400),
                    "OutOfDate",
                    &["INTEL-SA-00998"],
                ),
            ]),
            identity(module_version.saturating_add(2), vec![
                module_level(3, tcb_date(now, 120), "UpToDate", &[]),
            ]),
        ],
        "tcbLevels": levels,
    });
    Ok(serde_json::to_string(&info)?)
}

/// The TD quoting enclave identity the simulated QE report matches.
pub(super) fn qe_identity(
    issued: DateTime<Utc>,
    next_update: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<String, SimError> {
    let identity = json!({
        "id": "TD_QE",
        "version": 2,
        "issueDate": rfc3339(issued),
        "nextUpdate": rfc3339(next_update),
        "tcbEvaluationDataNumber": TCB_EVALUATION_DATA_NUMBER,
        "miscselect": "00000000",
        "miscselectMask": "FFFFFFFF",
        // Intel's values: under the mask INIT and PROVISIONKEY must be set and DEBUG clear;
        // MODE64BIT (0x04) and the XFRM half are masked out.
        "attributes": QE_IDENTITY_ATTRIBUTES,
        "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
        "mrsigner": hex::encode_upper(QE_MRSIGNER),
        "isvprodid": QE_ISVPRODID,
        "tcbLevels": [
            {"tcb": {"isvsvn": QE_ISVSVN}, "tcbDate": tcb_date(now, 120), "tcbStatus": "UpToDate"},
        ],
    });
    Ok(serde_json::to_string(&identity)?)
}
