//! A plain HTTP client walk through the simulator, gathering what a live check gathers into a
//! `teewatch-bundle/1` document: the attestation for a fresh nonce, DCAP collateral from the
//! PCCS, NRAS's answer and JWKS, and signed canary chats (non-streaming and streaming).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use rand::RngCore;
use serde_json::{Value, json};
use teewatch::fetch::pccs::{PccsAnswers, collateral_json};
use teewatch::verify::hexutil;

pub struct Fetched {
    pub bundle: Value,
    pub nonce: String,
}

async fn get(client: &reqwest::Client, url: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = client.get(url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Fetches everything for `model` from the simulator at `base` into a bundle.
pub async fn fetch_bundle(base: &str, key: &str, model: &str) -> Fetched {
    let client = reqwest::Client::new();
    let mut nonce = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut nonce);
    let nonce = hexutil::lower(&nonce);
    let mut fetch_errors = Vec::new();

    // The attestation, with a deadline and the 16 MiB cap teewatch applies.
    let response = client
        .get(format!(
            "{base}/v1/attestation/report?model={model}&nonce={nonce}&signing_algo=ecdsa"
        ))
        .bearer_auth(key)
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
    let mut error = |kind: &str, message: String| {
        fetch_errors.push(json!({"endpoint": "attestation", "kind": kind, "message": message}));
        Value::Null
    };
    let attestation: Value = match response {
        Err(e) => error("timeout", e.to_string()),
        Ok(r) if !r.status().is_success() => error("http_status", format!("{}", r.status())),
        Ok(r) => match r.bytes().await {
            Err(e) => error("timeout", e.to_string()),
            Ok(body) if body.len() > 16 * 1024 * 1024 => error(
                "too_large",
                format!("{} bytes, over the 16 MiB cap", body.len()),
            ),
            Ok(body) => match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => error("invalid_json", e.to_string()),
            },
        },
    };

    // Collateral from the PCCS.
    let tcb = get(
        &client,
        &format!("{base}/tdx/certification/v4/tcb?fmspc=00"),
        None,
    )
    .await;
    let tcb_chain = header(&tcb, "TCB-Info-Issuer-Chain");
    let tcb_ok = tcb.status().is_success();
    let tcb_body = tcb.bytes().await.unwrap().to_vec();
    let qe = get(
        &client,
        &format!("{base}/tdx/certification/v4/qe/identity"),
        None,
    )
    .await;
    let qe_chain = header(&qe, "SGX-Enclave-Identity-Issuer-Chain");
    let qe_body = qe.bytes().await.unwrap().to_vec();
    let crl = get(
        &client,
        &format!("{base}/sgx/certification/v4/pckcrl?ca=platform&encoding=der"),
        None,
    )
    .await;
    let crl_chain = header(&crl, "SGX-PCK-CRL-Issuer-Chain");
    let crl_body = crl.bytes().await.unwrap().to_vec();
    let root = get(
        &client,
        &format!("{base}/sgx/certification/v4/rootcacrl"),
        None,
    )
    .await;
    let root_body = root.bytes().await.unwrap().to_vec();
    let collateral = if tcb_ok {
        collateral_json(&PccsAnswers {
            tcb_info_body: tcb_body,
            tcb_info_issuer_chain: tcb_chain,
            qe_identity_body: qe_body,
            qe_identity_issuer_chain: qe_chain,
            pck_crl_body: crl_body,
            pck_crl_issuer_chain: crl_chain,
            root_ca_crl_body: root_body,
        })
        .ok()
        .unwrap_or(Value::Null)
    } else {
        fetch_errors.push(json!({"endpoint": "pccs", "kind": "http_status", "message": "503"}));
        Value::Null
    };

    // NRAS: each node's payload verbatim (one answer per node scope when there are several), and
    // the JWKS.
    let mut parts: Vec<(String, String)> = Vec::new();
    match attestation
        .get("all_attestations")
        .and_then(Value::as_array)
    {
        Some(nodes) if nodes.len() > 1 => {
            for node in nodes {
                let address = node["signing_address"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                if let Some(payload) = node["nvidia_payload"].as_str() {
                    parts.push((format!("node:{address}"), payload.to_string()));
                }
            }
        }
        _ => {
            if let Some(payload) = attestation.get("nvidia_payload").and_then(Value::as_str) {
                parts.push((String::new(), payload.to_string()));
            }
        }
    }
    let mut answers = Vec::new();
    for (scope, payload) in &parts {
        let answer = client
            .post(format!("{base}/v3/attest/gpu"))
            .header("content-type", "application/json")
            .body(payload.clone())
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await;
        let jwks: Value = get(&client, &format!("{base}/.well-known/jwks.json"), None)
            .await
            .json()
            .await
            .unwrap();
        match answer {
            Ok(r) if r.status().is_success() => answers.push(json!({"scope": scope, "response": r.json::<Value>().await.unwrap(), "jwks": jwks})),
            Ok(r) => fetch_errors.push(json!({"endpoint": "nras", "kind": "http_status", "message": format!("{}", r.status())})),
            Err(e) => fetch_errors.push(json!({"endpoint": "nras", "kind": "timeout", "message": e.to_string()})),
        }
    }
    let nras = match answers.len() {
        0 => Value::Null,
        _ if parts.len() == 1 && parts[0].0.is_empty() => {
            let mut single = answers.remove(0);
            single.as_object_mut().unwrap().remove("scope");
            single
        }
        _ => Value::Array(answers),
    };

    // Canary chats: the exact request bytes sent, the exact response bytes received.
    let mut canary = Vec::new();
    for stream in [false, true] {
        let request = json!({
            "model": model,
            "messages": [{"role": "user", "content": format!("teewatch canary {nonce}: reply ok")}],
            "stream": stream,
            "max_tokens": 8,
        })
        .to_string();
        let response = client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(request.clone())
            .send()
            .await
            .unwrap();
        let body = response.text().await.unwrap();
        let id = if stream {
            body.lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .find_map(|c| c["id"].as_str().map(str::to_string))
        } else {
            serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_string))
        }
        .unwrap_or_default();
        let signature = get(
            &client,
            &format!("{base}/v1/signature/{id}?model={model}&signing_algo=ecdsa"),
            Some(key),
        )
        .await;
        let signature = if signature.status().is_success() {
            signature.json::<Value>().await.unwrap()
        } else {
            Value::Null
        };
        canary.push(json!({"stream": stream, "request_body": request, "response_body": body, "signature": signature}));
    }

    Fetched {
        bundle: json!({
            "format": "teewatch-bundle/1",
            "target": model,
            "observed_at": chrono::Utc::now().to_rfc3339(),
            "nonce": nonce,
            "endpoints": {"provider": base, "nras": base, "pccs": base},
            "attestation": attestation,
            "fetch_errors": fetch_errors,
            "tdx_collateral": collateral,
            "nras": nras,
            "canary": canary,
            "tls_peer_spki": null,
        }),
        nonce,
    }
}
