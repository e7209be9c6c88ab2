#!/usr/bin/env python3
"""Builds teewatch-bundle/1 files in tests/bundles/ from the real vectors beside this script.

Each bundle wraps real quotes, event logs, dstack info and DCAP collateral, unchanged, in the
envelope teewatch verifies: a report in the dstack / vllm-proxy shape, the nonce, the collateral
and the instant the report is judged at (chosen inside or outside the collateral's validity
window). Where a vector's REPORTDATA is an address-and-nonce binding, the bundle's nonce and
signing address are taken from it so the binding can pass; elsewhere the vector's REPORTDATA is
whatever its source put there and the binding honestly fails.

Run from the repository root: python3 tests/vectors/make_bundles.py
"""
import base64
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "bundles")


def read(path, mode="rb"):
    with open(os.path.join(HERE, path), mode) as f:
        return f.read()


def load(path):
    return json.loads(read(path, "r"))


def report_data(quote):
    version = int.from_bytes(quote[0:2], "little")
    body = 48 if version == 4 else 54
    return quote[body + 520: body + 584]


def bundle(name, observed_at, nonce, attestation, collateral=None, policy=None, **extra):
    doc = {
        "format": "teewatch-bundle/1",
        "target": name,
        "observed_at": observed_at,
        "nonce": nonce,
        "endpoints": {"provider": None, "nras": None, "pccs": None},
        "attestation": attestation,
        "fetch_errors": [],
        "tdx_collateral": collateral,
        "nras": None,
        "canary": None,
        "tls_peer_spki": None,
    }
    if policy is not None:
        doc["policy"] = policy
    doc.update(extra)
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def plain_report(quote, address="0x" + "00" * 20):
    return {"signing_address": address, "signing_algo": "ecdsa", "intel_quote": quote.hex()}


ZERO_NONCE = "00" * 32
NANOGPT_INTEL_PINS = {
    "intel_mrenclave": ["6489d6c8e4f92f160b7cad34207b00c100000000000000000000000000000000"],
    "intel_mrsigner": ["00000000000000000000001000000000e702060000000000924f8a6140332b2c"],
}


def main():
    os.makedirs(OUT, exist_ok=True)

    # dcap-qvl v4 quote (TD 1.0 body) with its collateral, judged inside the window
    # 2025-06-19..2025-07-19. REPORTDATA is a test value: the nonce half is taken from it,
    # the address half is not an address, so the binding fails on the first half.
    q = read("tdx/dcap-qvl/tdx_quote")
    coll = load("tdx/dcap-qvl/tdx_quote_collateral.json")
    rd = report_data(q)
    bundle("dcapqvl-v4-uptodate", "2025-06-25T00:00:00Z", rd[32:].hex(), plain_report(q), coll,
           policy={"pins": NANOGPT_INTEL_PINS})
    # The same quote judged after the collateral expired: the signature check cannot be decided.
    bundle("dcapqvl-v4-collateral-expired", "2025-09-01T00:00:00Z", rd[32:].hex(),
           plain_report(q), coll)

    # dcap-qvl v5 quote (TD 1.5ex body) with its collateral (2026-10-08..2026-11-06).
    q = read("tdx/dcap-qvl/tdx_quote_td15ex")
    coll = load("tdx/dcap-qvl/tdx_quote_td15ex_collateral.json")
    bundle("dcapqvl-v5-td15ex-uptodate", "2026-10-20T00:00:00Z", report_data(q)[32:].hex(),
           plain_report(q), coll)

    # automata-dcap-rs quote, collateral assembled from its PCS bodies (2025-02-13..2025-03-15):
    # OutOfDate with three advisories. REPORTDATA is all zero, so a zero address and zero nonce
    # bind.
    q = read("tdx/automata-dcap-rs/quote_tdx_00806f050000.dat")
    coll = load("tdx/automata-dcap-rs/assembled_dcap_qvl_collateral.json")
    bundle("automata-outofdate", "2025-02-20T00:00:00Z", ZERO_NONCE, plain_report(q), coll)

    # go-tdx-guest v4 quote with collateral assembled from its PCS bodies: every signature
    # verifies, but no TCB level matches.
    q = read("tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat")
    coll = load("tdx/go-tdx-guest/assembled_dcap_qvl_collateral.json")
    bundle("gotdxguest-no-tcb-level", "2023-06-20T00:00:00Z", report_data(q)[32:].hex(),
           plain_report(q), coll)

    # An SGX quote where a TDX quote is expected.
    q = read("tdx/dcap-qvl/sgx_quote")
    coll = load("tdx/dcap-qvl/sgx_quote_collateral.json")
    bundle("sgx-quote", "2025-06-25T00:00:00Z", ZERO_NONCE, plain_report(q), coll)

    # NEAR AI private-ml-sdk sample quote: its windows are NanoGPT's published Intel values. No
    # collateral exists for it.
    q = read("tdx/nearai-private-ml-sdk/e2e_readme_intel_quote.bin")
    bundle("nearai-nanogpt-pins", "2025-06-25T00:00:00Z", report_data(q)[32:].hex(),
           plain_report(q), None, policy={"pins": NANOGPT_INTEL_PINS})

    # dstack verifier fixture: quote, event log (28 events) and vm_config. REPORTDATA is
    # 0x1234 followed by zeros: address 0x1234000…, nonce zero.
    fx = load("tdx/dstack/verifier_fixtures_quote-report.json")
    att = {
        "signing_address": "0x1234" + "00" * 18,
        "signing_algo": "ecdsa",
        "intel_quote": fx["quote"],
        "event_log": fx["event_log"],
        "vm_config": fx["vm_config"],
    }
    bundle("dstack-quote-report", "2025-06-25T00:00:00Z", ZERO_NONCE, att, None,
           policy={"pins": {"os_image_hash": [json.loads(fx["vm_config"])["os_image_hash"]]}})

    # dstack tdx-lite GetQuote capture: REPORTDATA carries a dstack key-provider string, not an
    # address binding.
    fx = load("tdx/dstack/verifier_fixtures_tdx-lite-getquote.json")
    att = {
        "signing_address": "0x" + "00" * 20,
        "signing_algo": "ecdsa",
        "intel_quote": fx["quote"],
        "event_log": fx["event_log"],
        "vm_config": fx["vm_config"],
    }
    # Its vm_config claims os_image_hash e6f5…, while the replayed os-image-hash event says 07a2…:
    # a pin on the claimed value must fail.
    bundle("dstack-tdx-lite", "2025-06-25T00:00:00Z", ZERO_NONCE, att, None,
           policy={"pins": {"os_image_hash": [json.loads(fx["vm_config"])["os_image_hash"]],
                            "key_provider": ["kms"]}})

    # Phala private-ml-sdk vllm-proxy test data: GetQuote output plus dstack Info with the app
    # compose; MRCONFIGID = 0x01 ‖ sha256(app_compose). REPORTDATA is 0x01 × 64 (a test value).
    gq = load("provider/private-ml-sdk/phala_pmlsdk_sample_dstack_getquote.json")
    info = load("provider/private-ml-sdk/phala_pmlsdk_sample_dstack_info.json")
    info_for_report = dict(info)
    info_for_report["tcb_info"] = json.dumps(info["tcb_info"])
    att = {
        "signing_address": "0x" + "01" * 20,
        "signing_algo": "ecdsa",
        "intel_quote": gq["quote"],
        "event_log": gq["event_log"],
        "info": info_for_report,
    }
    bundle("pmlsdk-dstack-sample", "2025-06-25T00:00:00Z", "01" * 32, att, None,
           policy={"pins": {"compose_hash": [info["compose_hash"]],
                            "mrtd": [info["tcb_info"]["mrtd"]]}})

    # GPU evidence: real SPDM reports and certificate chains beside the dstack fixture's quote.
    # The bundle nonce is the GPU evidence's nonce, so gpu_nonce can pass while the quote (bound
    # to another nonce) honestly fails report_data_binding.
    dstack_report = {
        "signing_address": "0x1234" + "00" * 18,
        "signing_algo": "ecdsa",
        "intel_quote": load("tdx/dstack/verifier_fixtures_quote-report.json")["quote"],
        "event_log": load("tdx/dstack/verifier_fixtures_quote-report.json")["event_log"],
    }

    def gpu_bundle(name, gpus, nonce, nras=None, policy=None):
        att = dict(dstack_report)
        att["nvidia_payload"] = json.dumps({
            "nonce": nonce,
            "arch": gpus[0]["arch"],
            "evidence_list": gpus,
        })
        bundle(name, "2026-11-28T00:00:00Z", nonce, att, None, policy=policy, nras=nras)

    def hex_report(report, chain, arch="HOPPER"):
        evidence = bytes.fromhex(read(report, "r").strip())
        return {
            "evidence": base64.b64encode(evidence).decode(),
            "certificate": base64.b64encode(read(chain)).decode(),
            "arch": arch,
        }, evidence[4:36].hex()

    # nvtrust's Hopper sample with NRAS's real detached EAT for the same nonce; NVIDIA's JWKS for
    # that token was not preserved, so nras_token must fail on the unknown key.
    gpu, nonce = hex_report("nvidia/nvtrust/hopperAttestationReport.txt",
                            "nvidia/nvtrust/hopperCertChain.txt")
    gpu_bundle("gpu-nvtrust-hopper", [gpu], nonce,
               nras={"response": load("nvidia/attestation-sdk/hopperClaimsv3_detached_eat.json"),
                     "jwks": {"keys": []}},
               policy={"pins": {"nvidia_mrenclave": [
                   "00000000020133000130008048dfd18fe229bf16eb9d30cca0f11a24dafe6eb7"]}})
    # Blackwell (FWID in DiceTcbInfo), trustee's report with a trailing byte, and the sample
    # whose signature does not verify.
    gpu, nonce = hex_report("nvidia/attestation-sdk/sample_blackwellAttestationReport.txt",
                            "nvidia/attestation-sdk/sample_blackwellCertChain.txt", "BLACKWELL")
    gpu_bundle("gpu-blackwell", [gpu], nonce)
    gpu, nonce = hex_report("nvidia/trustee/hopper_coco_report1.txt",
                            "nvidia/trustee/hopper_coco_certs1.txt")
    gpu_bundle("gpu-trustee-trailing-byte", [gpu], nonce)
    gpu, nonce = hex_report("nvidia/attestation-sdk/sample_hopperAttestationReportInvalidSignature.txt",
                            "nvidia/attestation-sdk/sample_hopperCertChain_535.txt")
    gpu_bundle("gpu-invalid-signature", [gpu], nonce)
    # Eight H100s of a protected-PCIe system, all with the same nonce; no NRAS answer.
    ppcie = load("nvidia/nvtrust/ppcie_gpu_evidence_8xH100.json")
    gpus = [{"evidence": g["evidence"], "certificate": g["certificate"], "arch": g["arch"]}
            for g in ppcie]
    gpu_bundle("gpu-ppcie-8xh100", gpus, ppcie[0]["nonce"])

    # A canary chat from NEAR AI's documentation beside the dstack fixture: its signature is
    # genuine but from a key no node here attests, and its request does not carry our nonce.
    vec = load("provider/nearai/signature_vectors.json")["vectors"][0]
    bundle("nearai-canary", "2025-06-25T00:00:00Z", ZERO_NONCE, dict(dstack_report), None,
           canary=[{"stream": True, "request_body": vec["request_body_exact"],
                    "response_body": vec["response_body_exact"],
                    "signature": vec["signature_response"]}])

    # A check whose attestation fetch failed: every check must be unknown.
    bundle("fetch-failed", "2025-06-25T00:00:00Z", ZERO_NONCE, None, None,
           fetch_errors=[{"endpoint": "attestation", "kind": "timeout",
                          "message": "no response within 30 s"}])


if __name__ == "__main__":
    main()
