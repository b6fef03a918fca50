//! Data-subject rights (GDPR Art. 15-18, 20, 21; DPA §5(d), §7) and the request inbox,
//! end to end over HTTP against the real server, with synthetic people. Each test states
//! the promise it checks; where the promise is about storage, it looks at the database
//! behind the server's back.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

// ---------------------------------------------------------------------------------------
// Synthetic people: deterministic, realistic-looking, and never a real person.
// ---------------------------------------------------------------------------------------

mod synth {
    /// One made-up person. `email` and `phone` are already in the stored (normalised) form.
    #[derive(Debug, Clone)]
    pub struct Person {
        pub given: &'static str,
        pub family: &'static str,
        pub email: String,
        pub phone: String,
        /// Holds a comma (and sometimes quotes) on purpose: CSV must quote it.
        pub address: String,
        pub birth_year: i64,
        pub newsletter: bool,
    }

    impl Person {
        pub fn name(&self) -> String {
            format!("{} {}", self.given, self.family)
        }
    }

    const GIVEN: &[(&str, &str)] = &[
        ("Zoé", "zoe"),
        ("Léa", "lea"),
        ("Hugo", "hugo"),
        ("Chloé", "chloe"),
        ("Mathéo", "matheo"),
        ("Inès", "ines"),
        ("Lucas", "lucas"),
        ("Anaïs", "anais"),
        ("Noah", "noah"),
        ("Camille", "camille"),
        ("Jules", "jules"),
        ("Manon", "manon"),
        ("Gabriel", "gabriel"),
        ("Élodie", "elodie"),
        ("Raphaël", "raphael"),
        ("Sofia", "sofia"),
    ];
    const FAMILY: &[(&str, &str)] = &[
        ("Martin", "martin"),
        ("Bernard", "bernard"),
        ("Dubois", "dubois"),
        ("Thomas", "thomas"),
        ("Petit", "petit"),
        ("Durand", "durand"),
        ("Leroy", "leroy"),
        ("Moreau", "moreau"),
        ("Lefèvre", "lefevre"),
        ("Garnier", "garnier"),
        ("Rousseau", "rousseau"),
        ("Fontaine", "fontaine"),
        ("Chevalier", "chevalier"),
        ("Müller", "muller"),
        ("Rossi", "rossi"),
        ("García", "garcia"),
    ];
    const STREETS: &[&str] = &[
        "rue de la République",
        "avenue Jean Jaurès",
        "boulevard Voltaire",
        "rue des Lilas",
        "place du Marché",
        "chemin des Vignes",
        "allée des Tilleuls",
        "quai \"Saint-Vincent\"",
    ];
    const CITIES: &[(&str, &str)] = &[
        ("75011", "Paris"),
        ("69002", "Lyon"),
        ("13001", "Marseille"),
        ("31000", "Toulouse"),
        ("67000", "Strasbourg"),
        ("44000", "Nantes"),
        ("33000", "Bordeaux"),
        ("59000", "Lille"),
    ];
    const DOMAINS: &[&str] = &[
        "example.org",
        "example.com",
        "example.net",
        "mail.example.fr",
    ];

    /// SplitMix64: a tiny, well-mixed deterministic generator.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn pick<T: Copy>(&mut self, from: &[T]) -> T {
            from[(self.next() % from.len() as u64) as usize]
        }
    }

    /// The person with this seed; distinct seeds give distinct emails and phones.
    pub fn person(seed: u64) -> Person {
        let mut r = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xC0FF_EE00);
        let (given, g) = r.pick(GIVEN);
        let (family, f) = r.pick(FAMILY);
        let domain = r.pick(DOMAINS);
        let street = r.pick(STREETS);
        let (postcode, city) = r.pick(CITIES);
        let number = 1 + r.next() % 180;
        // French mobile numbers: +33 6 or 7, then 8 digits; the seed makes them unique.
        let mobile = 6 + r.next() % 2;
        let digits = (seed * 7919 + r.next() % 7919) % 100_000_000;
        Person {
            given,
            family,
            email: format!("{g}.{f}.{seed}@{domain}"),
            phone: format!("+33{mobile}{digits:08}"),
            address: format!("{number} {street}, {postcode} {city}"),
            birth_year: 1950 + (r.next() % 55) as i64,
            newsletter: r.next().is_multiple_of(2),
        }
    }
}

use synth::{Person, person};

// ---------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------

/// Every data operation the API can be asked for, including disclosure (export).
const OPS: &[&str] = &[
    "collection",
    "recording",
    "alteration",
    "retrieval",
    "consultation",
    "disclosure",
    "erasure",
    "restriction",
];

const EXPORT_SCHEMA_FILE: &str =
    include_str!("../../custodian-vault/schemas/subject-export.v1.json");

/// Documents a purpose with an explicit description, basis and retention.
async fn purpose(
    app: &TestApp,
    admin: &Token,
    name: &str,
    basis: &str,
    categories: &[&str],
    retention_days: u32,
) {
    app.post_json(
        "/v1/purposes",
        &admin.secret,
        None,
        &json!({
            "name": name,
            "description": format!("{name}: documented instruction of the controller"),
            "lawful_basis": basis,
            "categories": categories,
            "operations": OPS,
            "retention_days": retention_days,
        }),
    )
    .await
    .expect(201);
}

/// A controller documenting `account` (user, contract, 365 days), `marketing`
/// (user.contact, consent, 90 days) and `support` (user.contact, legitimate interests,
/// 30 days), with its admin and app tokens.
async fn shop(app: &TestApp, name: &str) -> Tenant {
    let controller = app.create_controller(name).await;
    let admin = app.issue_admin(&controller).await;
    purpose(app, &admin, "account", "contract", &["user"], 365).await;
    purpose(app, &admin, "marketing", "consent", &["user.contact"], 90).await;
    purpose(
        app,
        &admin,
        "support",
        "legitimate_interests",
        &["user.contact"],
        30,
    )
    .await;
    let app_token = app.issue_token(&admin, "controller_app").await;
    Tenant {
        controller,
        admin,
        app: app_token,
    }
}

/// The account record of a person: name, email, phone, address, birth year, newsletter.
fn account_fields(p: &Person) -> Value {
    json!({
        "name": { "category": "user.name", "value": p.name() },
        "email": { "category": "user.contact.email", "value": p.email },
        "phone": { "category": "user.contact.phone_number", "value": p.phone },
        "address": { "category": "user.contact.address", "value": p.address },
        "birth_year": { "category": "user.demographic", "value": p.birth_year },
        "newsletter": { "category": "user.behavior", "value": p.newsletter },
    })
}

/// Only contact fields: readable under every purpose of [`shop`].
fn contact_fields(p: &Person) -> Value {
    json!({
        "email": { "category": "user.contact.email", "value": p.email },
        "phone": { "category": "user.contact.phone_number", "value": p.phone },
    })
}

/// Creates a customer with a first record under `purpose`; returns (subject, record).
async fn create(app: &TestApp, token: &str, purpose: &str, fields: Value) -> (String, String) {
    let v = app
        .post_json(
            "/v1/subjects",
            token,
            Some(purpose),
            &json!({
                "category": "customer",
                "record": {
                    "fields": fields,
                    "source": "signup form",
                    "recipients": ["payment provider", "carrier"],
                },
            }),
        )
        .await
        .expect(201);
    (
        v["id"].as_str().expect("id").to_owned(),
        v["record"].as_str().expect("record").to_owned(),
    )
}

async fn add_record(
    app: &TestApp,
    token: &str,
    purpose: &str,
    subject: &str,
    body: Value,
) -> String {
    app.post_json(
        &format!("/v1/subjects/{subject}/records"),
        token,
        Some(purpose),
        &body,
    )
    .await
    .expect(201)["id"]
        .as_str()
        .expect("record id")
        .to_owned()
}

async fn export(app: &TestApp, token: &str, purpose: &str, subject: &str) -> Resp {
    app.get(
        &format!("/v1/subjects/{subject}/export"),
        token,
        Some(purpose),
    )
    .await
}

fn schema_validator(schema_text: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(schema_text).expect("the schema is JSON");
    assert_eq!(
        schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "the export schema declares draft 2020-12"
    );
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the schema is a valid 2020-12 schema")
}

#[track_caller]
fn assert_valid(v: &jsonschema::Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not validate: {errors:#?}\n{instance:#}"
    );
}

/// The export with everything that legitimately differs between controllers removed:
/// ids, the controller, timestamps; records in a canonical order.
fn canonical(export: &Value) -> Value {
    let mut e = export.clone();
    let o = e.as_object_mut().expect("export object");
    o.remove("controller");
    o.remove("exported_at");
    let s = o
        .get_mut("subject")
        .and_then(Value::as_object_mut)
        .expect("subject");
    s.remove("id");
    s.remove("created_at");
    let records = o
        .get_mut("records")
        .and_then(Value::as_array_mut)
        .expect("records");
    for r in records.iter_mut() {
        let r = r.as_object_mut().expect("record");
        for k in ["id", "created_at", "updated_at", "expires_at"] {
            r.remove(k);
        }
    }
    records.sort_by_key(|r| serde_json::to_string(r).expect("serialise"));
    e
}

/// RFC 4180 CSV: quoted cells may hold commas, doubled quotes and line breaks.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cell.push('"');
                } else {
                    quoted = false;
                }
            } else {
                cell.push(c);
            }
        } else {
            match c {
                '"' if cell.is_empty() => quoted = true,
                ',' => row.push(std::mem::take(&mut cell)),
                '\n' => {
                    row.push(std::mem::take(&mut cell));
                    rows.push(std::mem::take(&mut row));
                }
                '\r' => {}
                _ => cell.push(c),
            }
        }
    }
    assert!(!quoted, "unterminated quoted cell");
    if !cell.is_empty() || !row.is_empty() {
        row.push(cell);
        rows.push(row);
    }
    rows
}

fn audit_text(entries: &[Value]) -> String {
    serde_json::to_string(entries).expect("serialise")
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

async fn file_request(app: &TestApp, controller: &str, body: &Value) -> Resp {
    app.send(
        app.client
            .post(app.url(&format!("/v1/public/controllers/{controller}/requests")))
            .json(body),
    )
    .await
}

async fn act(app: &TestApp, admin: &Token, request: &str, action: Value) -> Resp {
    app.post_json(
        &format!("/v1/requests/{request}/actions"),
        &admin.secret,
        None,
        &action,
    )
    .await
}

/// Links a request to its subject and confirms the requester's identity: ready to fulfil.
async fn link_and_confirm(app: &TestApp, admin: &Token, request: &str, subject: &str) {
    for action in [
        json!({ "action": "link", "subject": subject }),
        json!({ "action": "confirm_identity" }),
    ] {
        act(app, admin, request, action).await.expect(200);
    }
}

async fn inbox(app: &TestApp, admin: &Token, state: &str) -> Vec<Value> {
    app.get(&format!("/v1/requests?state={state}"), &admin.secret, None)
        .await
        .expect(200)
        .as_array()
        .expect("inbox is an array")
        .clone()
}

// ---------------------------------------------------------------------------------------
// 1. Access (Art. 15): one call returns every record and every Art. 15 attribute, valid
//    against the published JSON Schema; a CSV flavour with one line per field.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_export_covers_every_record_and_art15_attribute_and_validates() {
    let app = spawn_app().await;
    let t = shop(&app, "Boutique Lumière").await;
    let p = person(1);
    let (subject, first) = create(&app, &t.app.secret, "account", account_fields(&p)).await;
    let second = add_record(
        &app,
        &t.app.secret,
        "marketing",
        &subject,
        json!({
            "fields": { "email": { "category": "user.contact.email", "value": p.email } },
            "source": "newsletter form",
            "recipients": ["emailing provider"],
            "automated_decision": "segment chosen from purchase history, no legal effect",
        }),
    )
    .await;
    let third = add_record(
        &app,
        &t.app.secret,
        "support",
        &subject,
        json!({
            "fields": {
                "phone": { "category": "user.contact.phone_number", "value": p.phone },
                "address": { "category": "user.contact.address", "value": format!("{}\nBât. B, 3e étage", p.address) },
            },
        }),
    )
    .await;
    // An objection to another purpose shows in the export without blocking it.
    let other = person(2);
    let (objector, _) = create(&app, &t.app.secret, "account", contact_fields(&other)).await;
    app.send(app.req(
        Method::PUT,
        &format!("/v1/subjects/{objector}/objections/marketing"),
        Some(&t.app.secret),
        Some("account"),
    ))
    .await;

    let served = app
        .send(app.client.get(app.url("/v1/schemas/subject-export.json")))
        .await;
    assert_eq!(served.status.as_u16(), 200, "{}", served.text);
    assert!(
        served.content_type().starts_with("application/schema+json"),
        "{}",
        served.content_type()
    );
    assert_eq!(
        served.json(),
        serde_json::from_str::<Value>(EXPORT_SCHEMA_FILE).expect("file is JSON"),
        "the served schema is the published file"
    );
    let from_server = schema_validator(&served.text);
    let from_file = schema_validator(EXPORT_SCHEMA_FILE);

    let e = export(&app, &t.app.secret, "account", &subject)
        .await
        .expect(200);
    assert_valid(&from_server, &e, "the export (served schema)");
    assert_valid(&from_file, &e, "the export (schema file)");
    // The validator is not vacuous: a record without its expiry, an unknown member, a
    // bad date all fail.
    for (what, broken) in [
        ("no expires_at", {
            let mut b = e.clone();
            b["records"][0]
                .as_object_mut()
                .expect("o")
                .remove("expires_at");
            b
        }),
        ("extra member", {
            let mut b = e.clone();
            b["records"][0]["secret"] = json!("x");
            b
        }),
        ("bad date", {
            let mut b = e.clone();
            b["exported_at"] = json!("yesterday");
            b
        }),
        ("no restriction flag", {
            let mut b = e.clone();
            b["subject"]
                .as_object_mut()
                .expect("o")
                .remove("restricted");
            b
        }),
    ] {
        assert!(
            !from_file.is_valid(&broken),
            "the schema accepts an export with {what}"
        );
    }

    assert_eq!(e["format"], "custodian.subject-export/v1");
    assert_eq!(e["controller"], t.controller.as_str());
    assert_eq!(e["subject"]["id"], subject.as_str());
    assert_eq!(e["subject"]["category"], "customer");
    assert_eq!(e["subject"]["restricted"], false);
    assert_eq!(e["subject"]["objections"], json!([]));

    // Every record, each with every Art. 15 attribute.
    let records = e["records"].as_array().expect("records");
    let ids: BTreeSet<&str> = records.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(
        ids,
        BTreeSet::from([first.as_str(), second.as_str(), third.as_str()]),
        "every record is exported"
    );
    let purposes: BTreeMap<&str, &Value> = e["purposes"]
        .as_array()
        .expect("purposes")
        .iter()
        .map(|p| (p["name"].as_str().expect("purpose name"), p))
        .collect();
    assert_eq!(
        purposes.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from(["account", "marketing", "support"])
    );
    for (name, basis, days) in [
        ("account", "contract", 365),
        ("marketing", "consent", 90),
        ("support", "legitimate_interests", 30),
    ] {
        let p = purposes[name];
        assert!(
            p["description"]
                .as_str()
                .is_some_and(|d| d.starts_with(name)),
            "{p}"
        );
        assert_eq!(p["lawful_basis"], basis, "{p}");
        assert_eq!(p["retention_days"], days, "{p}");
    }
    for r in records {
        for attr in [
            "purpose",
            "categories",
            "fields",
            "recipients",
            "expires_at",
            "source",
            "automated_decision",
            "created_at",
        ] {
            assert!(
                r.as_object().expect("record").contains_key(attr),
                "record lacks {attr}: {r}"
            );
        }
        assert!(purposes.contains_key(r["purpose"].as_str().expect("purpose")));
        let field_categories: BTreeSet<&str> = r["fields"]
            .as_object()
            .expect("fields")
            .values()
            .filter_map(|f| f["category"].as_str())
            .collect();
        let categories: BTreeSet<&str> = r["categories"]
            .as_array()
            .expect("categories")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(categories, field_categories, "{r}");
        // Expiry: within the purpose's retention of creation.
        let created = time::OffsetDateTime::parse(
            r["created_at"].as_str().expect("created_at"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("rfc3339");
        let expires = time::OffsetDateTime::parse(
            r["expires_at"].as_str().expect("expires_at"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("rfc3339");
        let days = purposes[r["purpose"].as_str().expect("p")]["retention_days"]
            .as_i64()
            .expect("days");
        assert_eq!(expires - created, time::Duration::days(days), "{r}");
    }
    let by_id: BTreeMap<&str, &Value> = records
        .iter()
        .map(|r| (r["id"].as_str().expect("id"), r))
        .collect();
    let r1 = by_id[first.as_str()];
    assert_eq!(r1["purpose"], "account");
    assert_eq!(r1["source"], "signup form");
    assert_eq!(r1["recipients"], json!(["payment provider", "carrier"]));
    assert_eq!(r1["automated_decision"], Value::Null);
    assert_eq!(r1["fields"]["name"]["value"], p.name());
    assert_eq!(r1["fields"]["email"]["value"], p.email);
    assert_eq!(r1["fields"]["phone"]["value"], p.phone);
    assert_eq!(r1["fields"]["address"]["value"], p.address);
    assert_eq!(r1["fields"]["birth_year"]["value"], p.birth_year);
    assert_eq!(r1["fields"]["newsletter"]["value"], p.newsletter);
    assert_eq!(r1["fields"]["address"]["category"], "user.contact.address");
    let r2 = by_id[second.as_str()];
    assert_eq!(r2["purpose"], "marketing");
    assert_eq!(r2["source"], "newsletter form");
    assert_eq!(r2["recipients"], json!(["emailing provider"]));
    assert!(
        r2["automated_decision"]
            .as_str()
            .is_some_and(|s| s.starts_with("segment"))
    );
    let r3 = by_id[third.as_str()];
    assert_eq!(r3["purpose"], "support");
    assert_eq!(r3["source"], Value::Null);
    assert_eq!(r3["recipients"], json!([]));

    // The objector's export names the objection (and validates).
    let eo = export(&app, &t.app.secret, "account", &objector)
        .await
        .expect(200);
    assert_eq!(eo["subject"]["objections"], json!(["marketing"]));
    assert_valid(&from_file, &eo, "the objector's export");

    // CSV: a header, then one line per field, parsing back to the JSON's values.
    let csv = app
        .get(
            &format!("/v1/subjects/{subject}/export?format=csv"),
            &t.app.secret,
            Some("account"),
        )
        .await;
    assert_eq!(csv.status.as_u16(), 200, "{}", csv.text);
    assert!(csv.content_type().starts_with("text/csv"), "{csv:?}");
    let rows = parse_csv(&csv.text);
    let header = &rows[0];
    assert_eq!(
        header.join(","),
        "subject,record,purpose,field,category,value,source,recipients,automated_decision,created_at,expires_at,restricted,objections"
    );
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let field_count: usize = records
        .iter()
        .map(|r| r["fields"].as_object().expect("fields").len())
        .sum();
    assert_eq!(rows.len() - 1, field_count, "one line per field: {rows:#?}");
    let mut seen = BTreeSet::new();
    for row in &rows[1..] {
        assert_eq!(row.len(), header.len(), "ragged row {row:?}");
        assert_eq!(row[col("subject")], subject);
        let r = by_id[row[col("record")].as_str()];
        let f = &r["fields"][&row[col("field")]];
        assert_eq!(row[col("purpose")], r["purpose"].as_str().expect("p"));
        assert_eq!(row[col("category")], f["category"].as_str().expect("c"));
        let expected = match &f["value"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(row[col("value")], expected, "value of {row:?}");
        assert_eq!(row[col("source")], r["source"].as_str().unwrap_or_default());
        assert_eq!(row[col("expires_at")], r["expires_at"].as_str().expect("e"));
        assert_eq!(row[col("restricted")], "false");
        seen.insert((row[col("record")].clone(), row[col("field")].clone()));
    }
    assert_eq!(seen.len(), field_count, "every field appears exactly once");
    // The quoting was exercised: a comma, a double quote or a line break in some value.
    assert!(
        rows[1..]
            .iter()
            .any(|r| r[col("value")].contains('\n') && r[col("value")].contains(',')),
        "the multi-line address survived the round trip"
    );

    // Unknown format: a problem, not a silent JSON.
    app.get(
        &format!("/v1/subjects/{subject}/export?format=xml"),
        &t.app.secret,
        Some("account"),
    )
    .await
    .assert_problem();

    // The export is a disclosure in the audit trail, with field names and no values.
    let audit = app.audit(&t.admin).await;
    assert!(
        audit.iter().any(|e| e["action"] == "disclosure"
            && e["subject"] == subject.as_str()
            && e["outcome"] == "allowed"
            && e["fields"].as_array().is_some_and(|f| f.len() == 6)),
        "{audit:#?}"
    );
    let text = audit_text(&audit);
    for v in [&p.email, &p.phone, &p.address, &p.name()] {
        assert!(!text.contains(v.as_str()), "the audit trail holds {v}");
    }
}

// ---------------------------------------------------------------------------------------
// 2. Portability (Art. 20): export → import into a fresh controller → export again.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portability_round_trip_reproduces_the_same_content_in_a_fresh_controller() {
    let app = spawn_app().await;
    let a = shop(&app, "Ancienne Boutique").await;
    let b = shop(&app, "Nouvelle Boutique").await;
    let p = person(10);
    let (subject, _) = create(&app, &a.app.secret, "account", account_fields(&p)).await;
    add_record(
        &app,
        &a.app.secret,
        "marketing",
        &subject,
        json!({
            "fields": { "email": { "category": "user.contact.email", "value": p.email } },
            "source": "newsletter form",
            "recipients": ["emailing provider"],
            "automated_decision": "weekly digest frequency chosen from clicks",
        }),
    )
    .await;
    for i in 0..3 {
        add_record(
            &app,
            &a.app.secret,
            "support",
            &subject,
            json!({
                "fields": {
                    "phone": { "category": "user.contact.phone_number", "value": p.phone },
                    "address": { "category": "user.contact.address", "value": format!("ticket {i}: {}", p.address) },
                },
                "source": "support chat",
            }),
        )
        .await;
    }
    app.send(app.req(
        Method::PUT,
        &format!("/v1/subjects/{subject}/objections/marketing"),
        Some(&a.app.secret),
        Some("account"),
    ))
    .await;
    let original = export(&app, &a.app.secret, "account", &subject)
        .await
        .expect(200);
    assert_eq!(original["records"].as_array().map(Vec::len), Some(5));
    assert_eq!(original["subject"]["objections"], json!(["marketing"]));

    let created = app
        .post_json(
            "/v1/subjects/import",
            &b.app.secret,
            Some("account"),
            &original,
        )
        .await
        .expect(201);
    let imported = created["id"].as_str().expect("new subject id").to_owned();
    assert_ne!(imported, subject, "the import is a new pseudonymous id");

    let again = export(&app, &b.app.secret, "account", &imported)
        .await
        .expect(200);
    assert_eq!(again["controller"], b.controller.as_str());
    assert_eq!(again["subject"]["id"], imported.as_str());
    assert_eq!(
        canonical(&again),
        canonical(&original),
        "the round trip changed content"
    );
    let old_ids: BTreeSet<&str> = original["records"]
        .as_array()
        .expect("r")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert!(
        again["records"]
            .as_array()
            .expect("r")
            .iter()
            .all(|r| !old_ids.contains(r["id"].as_str().unwrap_or_default())),
        "record ids are fresh"
    );
    assert_valid(
        &schema_validator(EXPORT_SCHEMA_FILE),
        &again,
        "the re-export",
    );
    // The imported data works like any other: lookups in B find the new subject.
    let found = app
        .lookup(&b.app.secret, "account", "email", &p.email)
        .await
        .expect(200);
    assert_eq!(found["subjects"], json!([imported]));
    // The objection travelled: B may not process the subject for marketing.
    export(&app, &b.app.secret, "marketing", &imported)
        .await
        .expect_problem(403);
    // A is untouched.
    assert_eq!(
        canonical(
            &export(&app, &a.app.secret, "account", &subject)
                .await
                .expect(200)
        ),
        canonical(&original)
    );

    // A controller that did not document every purpose of the export stores nothing.
    let c_id = app.create_controller("Boutique Partielle").await;
    let c_admin = app.issue_admin(&c_id).await;
    purpose(&app, &c_admin, "account", "contract", &["user"], 365).await;
    let c_app = app.issue_token(&c_admin, "controller_app").await;
    let subjects_before = app.count("subjects");
    let records_before = app.count("records");
    let r = app
        .post_json(
            "/v1/subjects/import",
            &c_app.secret,
            Some("account"),
            &original,
        )
        .await;
    r.expect_problem(403);
    assert_eq!(app.count("subjects"), subjects_before, "a subject was left");
    assert_eq!(app.count("records"), records_before, "records were left");
    // Nor does a document that is not an export.
    let mut wrong = original.clone();
    wrong["format"] = json!("something-else/v9");
    app.post_json(
        "/v1/subjects/import",
        &b.app.secret,
        Some("account"),
        &wrong,
    )
    .await
    .expect_problem(422);
    let mut extra = original.clone();
    extra["records"][0]["hidden"] = json!(true);
    app.post_json(
        "/v1/subjects/import",
        &b.app.secret,
        Some("account"),
        &extra,
    )
    .await
    .expect_problem(422);
    assert_eq!(app.count("subjects"), subjects_before);
}

// ---------------------------------------------------------------------------------------
// 3. Rectification (Art. 16): the audit trail shows who changed which field, never values.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rectification_is_audited_with_actor_and_field_names_never_values() {
    let app = spawn_app().await;
    let t = shop(&app, "Rectifions").await;
    let p = person(20);
    let corrected = person(21);
    let (subject, record) = create(&app, &t.app.secret, "account", account_fields(&p)).await;

    let r = app
        .send(
            app.req(
                Method::PATCH,
                &format!("/v1/records/{record}"),
                Some(&t.app.secret),
                Some("account"),
            )
            .json(&json!({ "fields": {
                "email": { "category": "user.contact.email", "value": corrected.email },
                "address": { "category": "user.contact.address", "value": corrected.address },
            }})),
        )
        .await
        .expect(200);
    assert_eq!(r["fields"]["email"]["value"], corrected.email);
    assert_eq!(r["fields"]["address"]["value"], corrected.address);
    assert_eq!(r["fields"]["name"]["value"], p.name(), "other fields stay");

    let e = export(&app, &t.app.secret, "account", &subject)
        .await
        .expect(200);
    assert_eq!(e["records"][0]["fields"]["email"]["value"], corrected.email);
    // The blind index follows the correction.
    let old = app
        .lookup(&t.app.secret, "account", "email", &p.email)
        .await
        .expect(200);
    assert_eq!(old["subjects"], json!([]));
    let new = app
        .lookup(&t.app.secret, "account", "email", &corrected.email)
        .await
        .expect(200);
    assert_eq!(new["subjects"], json!([subject]));

    let audit = app.audit(&t.admin).await;
    let alterations: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "alteration" && e["outcome"] == "allowed")
        .collect();
    assert_eq!(alterations.len(), 1, "{audit:#?}");
    let a = alterations[0];
    assert!(
        a["actor"].as_str().is_some_and(|s| s.contains(&t.app.id)),
        "the actor is the app token: {a}"
    );
    assert_eq!(a["purpose"], "account");
    assert_eq!(a["subject"], subject.as_str());
    assert_eq!(a["record"], record.as_str());
    assert_eq!(a["fields"], json!(["address", "email"]));
    assert!(a["at"].is_string());
    let text = audit_text(&audit);
    for v in [&p.email, &corrected.email, &p.address, &corrected.address] {
        assert!(!text.contains(v.as_str()), "the audit trail holds {v}");
    }
}

// ---------------------------------------------------------------------------------------
// 4. Erasure (Art. 17): no record, field, index entry or key remains; lookups find
//    nothing; export is 410; the chain verifies and holds the erasure.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_removes_records_index_entries_and_key_and_is_in_the_verified_chain() {
    let app = spawn_app().await;
    let t = shop(&app, "Effaçons").await;
    let p = person(30);
    let keep = person(31);
    let (subject, _) = create(&app, &t.app.secret, "account", account_fields(&p)).await;
    let mut records = vec![];
    for purpose in ["marketing", "support"] {
        records.push(
            add_record(
                &app,
                &t.app.secret,
                purpose,
                &subject,
                json!({ "fields": contact_fields(&p) }),
            )
            .await,
        );
    }
    app.send(app.req(
        Method::PUT,
        &format!("/v1/subjects/{subject}/objections/marketing"),
        Some(&t.app.secret),
        Some("account"),
    ))
    .await;
    let (kept, _) = create(&app, &t.app.secret, "account", account_fields(&keep)).await;
    let sql = app.sql();
    let count = |q: &str| -> i64 { sql.query_row(q, [&subject], |r| r.get(0)).expect("count") };
    // A record's fields are one column of its row (`custodian_store::fieldset`).
    let before_fields = custodian_store::sqlite::stored_fields(&sql, "subject_id = ?1", [&subject])
        .expect("fields")
        .len() as i64;
    assert_eq!(before_fields, 6 + 2 + 2);
    assert_eq!(
        count("SELECT COUNT(*) FROM lookups WHERE subject_id = ?1"),
        6
    );

    let receipt = app
        .send(app.req(
            Method::DELETE,
            &format!("/v1/subjects/{subject}"),
            Some(&t.app.secret),
            Some("account"),
        ))
        .await
        .expect(200);
    assert_eq!(receipt["erased_now"], true);
    assert_eq!(receipt["records"], 3);
    assert_eq!(receipt["fields"], before_fields);
    assert_eq!(receipt["lookup_entries"], 6);

    // Behind the API's back: no record, field, lookup entry, objection or key row.
    let all_records = records
        .iter()
        .map(|r| format!("'{r}'"))
        .collect::<Vec<_>>()
        .join(",");
    for (what, q) in [
        (
            "subject key row",
            "SELECT COUNT(*) FROM subjects WHERE id = ?1".to_owned(),
        ),
        (
            "records",
            "SELECT COUNT(*) FROM records WHERE subject_id = ?1".to_owned(),
        ),
        (
            "records (which hold their fields), by id",
            format!("SELECT COUNT(*) FROM records WHERE id IN ({all_records}) OR ?1 = ''"),
        ),
        (
            "lookup entries",
            "SELECT COUNT(*) FROM lookups WHERE subject_id = ?1".to_owned(),
        ),
        (
            "objections",
            "SELECT COUNT(*) FROM objections WHERE subject_id = ?1".to_owned(),
        ),
    ] {
        assert_eq!(count(&q), 0, "{what} of the erased subject remain");
    }
    // The ledger keeps only the pseudonymous id.
    assert_eq!(
        count("SELECT COUNT(*) FROM erasures WHERE subject_id = ?1"),
        1
    );

    for kind_value in [("email", p.email.as_str()), ("phone", p.phone.as_str())] {
        for purpose in ["account", "marketing", "support"] {
            let found = app
                .lookup(&t.app.secret, purpose, kind_value.0, kind_value.1)
                .await
                .expect(200);
            assert_eq!(found["subjects"], json!([]), "{kind_value:?} {purpose}");
        }
    }
    export(&app, &t.app.secret, "account", &subject)
        .await
        .expect_problem(410);
    app.get(
        &format!("/v1/subjects/{subject}/export?format=csv"),
        &t.app.secret,
        Some("account"),
    )
    .await
    .expect_problem(410);
    // Idempotent.
    let again = app
        .send(app.req(
            Method::DELETE,
            &format!("/v1/subjects/{subject}"),
            Some(&t.app.secret),
            Some("account"),
        ))
        .await
        .expect(200);
    assert_eq!(again["erased_now"], false);
    // Others are untouched.
    export(&app, &t.app.secret, "account", &kept)
        .await
        .expect(200);

    app.vault.checkpoint().expect("sign checkpoints");
    let report = app
        .post_json("/v1/audit/verify", &t.admin.secret, None, &json!({}))
        .await
        .expect(200);
    assert_eq!(report["problems"], json!([]), "{report}");
    let audit = app.audit(&t.admin).await;
    let erasure = audit
        .iter()
        .find(|e| {
            e["action"] == "erasure"
                && e["subject"] == subject.as_str()
                && e["outcome"] == "allowed"
        })
        .unwrap_or_else(|| panic!("no erasure entry: {audit:#?}"));
    assert_eq!(erasure["seq"], receipt["audit_seq"]);
    let text = audit_text(&audit);
    for v in [&p.email, &p.phone, &p.address, &p.name()] {
        assert!(!text.contains(v.as_str()), "the audit trail holds {v}");
    }
}

// ---------------------------------------------------------------------------------------
// 5. Restriction (Art. 18): reads, updates, exports and lookups refused under every
//    documented purpose (and audited); erasure still allowed; lifting restores all.
// ---------------------------------------------------------------------------------------

/// Every operation on the subject under `purpose`; the statuses, in order.
async fn every_operation(
    app: &TestApp,
    token: &str,
    purpose: &str,
    subject: &str,
    record: &str,
    p: &Person,
) -> Vec<(&'static str, u16, String)> {
    let mut out = vec![];
    let r = app
        .get(&format!("/v1/subjects/{subject}"), token, Some(purpose))
        .await;
    out.push(("consultation", r.status.as_u16(), r.text));
    let r = app
        .get(&format!("/v1/records/{record}"), token, Some(purpose))
        .await;
    out.push(("retrieval", r.status.as_u16(), r.text));
    let r = app
        .send(
            app.req(
                Method::PATCH,
                &format!("/v1/records/{record}"),
                Some(token),
                Some(purpose),
            )
            .json(&json!({ "fields": { "phone": { "category": "user.contact.phone_number", "value": p.phone } } })),
        )
        .await;
    out.push(("alteration", r.status.as_u16(), r.text));
    let r = app
        .post_json(
            &format!("/v1/subjects/{subject}/records"),
            token,
            Some(purpose),
            &json!({ "fields": { "email": { "category": "user.contact.email", "value": p.email } } }),
        )
        .await;
    out.push(("recording", r.status.as_u16(), r.text));
    let r = export(app, token, purpose, subject).await;
    out.push(("disclosure", r.status.as_u16(), r.text));
    let r = app
        .get(
            &format!("/v1/subjects/{subject}/export?format=csv"),
            token,
            Some(purpose),
        )
        .await;
    out.push(("disclosure (csv)", r.status.as_u16(), r.text));
    let r = app.lookup(token, purpose, "email", &p.email).await;
    let found = r.status.as_u16() == 200
        && r.json()["subjects"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == subject));
    out.push(("lookup", if found { 200 } else { 403 }, r.text));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restriction_blocks_every_operation_under_every_purpose_until_lifted() {
    let app = spawn_app().await;
    let t = shop(&app, "Restreignons").await;
    let p = person(40);
    let (subject, record) = create(&app, &t.app.secret, "account", contact_fields(&p)).await;
    let purposes = ["account", "marketing", "support"];

    for purpose in purposes {
        for (op, status, text) in
            every_operation(&app, &t.app.secret, purpose, &subject, &record, &p).await
        {
            assert!(
                (200..300).contains(&status),
                "before restriction, {op} under {purpose}: {status} {text}"
            );
        }
    }
    let refused_before = app.refused_entries(&t.admin).await.len();

    app.send(app.req(
        Method::PUT,
        &format!("/v1/subjects/{subject}/restriction"),
        Some(&t.app.secret),
        Some("account"),
    ))
    .await;
    let records_before = app.count("records");
    let mut refused_ops = 0;
    for purpose in purposes {
        for (op, status, text) in
            every_operation(&app, &t.app.secret, purpose, &subject, &record, &p).await
        {
            assert_eq!(
                status, 403,
                "while restricted, {op} under {purpose} was not refused: {text}"
            );
            if op != "lookup" {
                assert!(text.contains("restricted"), "{op} under {purpose}: {text}");
                refused_ops += 1;
            }
        }
        // The admin's token is refused just the same.
        export(&app, &t.admin.secret, purpose, &subject)
            .await
            .expect_problem(403);
        refused_ops += 1;
    }
    assert_eq!(app.count("records"), records_before, "a record was added");
    let refused: Vec<Value> = app
        .refused_entries(&t.admin)
        .await
        .into_iter()
        .skip(refused_before)
        .filter(|e| {
            e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("restricted"))
        })
        .collect();
    assert_eq!(
        refused.len(),
        refused_ops,
        "every refusal is audited: {refused:#?}"
    );
    for purpose in purposes {
        assert!(
            refused.iter().any(|e| e["purpose"] == purpose),
            "no audited refusal under {purpose}"
        );
    }

    // Erasure stays possible on a restricted subject (Art. 17 and 18 together).
    let other = person(41);
    let (restricted_too, _) = create(&app, &t.app.secret, "account", contact_fields(&other)).await;
    app.send(app.req(
        Method::PUT,
        &format!("/v1/subjects/{restricted_too}/restriction"),
        Some(&t.app.secret),
        Some("account"),
    ))
    .await;
    app.send(app.req(
        Method::DELETE,
        &format!("/v1/subjects/{restricted_too}"),
        Some(&t.app.secret),
        Some("support"),
    ))
    .await
    .expect(200);

    // Lifting restores everything, under every purpose, with the data intact.
    let lifted = app
        .send(app.req(
            Method::DELETE,
            &format!("/v1/subjects/{subject}/restriction"),
            Some(&t.app.secret),
            Some("account"),
        ))
        .await;
    assert_eq!(lifted.status.as_u16(), 204, "{}", lifted.text);
    for purpose in purposes {
        for (op, status, text) in
            every_operation(&app, &t.app.secret, purpose, &subject, &record, &p).await
        {
            assert!(
                (200..300).contains(&status),
                "after lifting, {op} under {purpose}: {status} {text}"
            );
        }
    }
    let e = export(&app, &t.app.secret, "account", &subject)
        .await
        .expect(200);
    assert_eq!(e["subject"]["restricted"], false);
    assert_eq!(e["records"][0]["fields"]["email"]["value"], p.email);
}

// ---------------------------------------------------------------------------------------
// 6. Objection (Art. 21): refused under the objected purpose only, until withdrawn.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objection_refuses_only_the_objected_purpose_until_withdrawn() {
    let app = spawn_app().await;
    let t = shop(&app, "Objectons").await;
    let p = person(50);
    let (subject, record) = create(&app, &t.app.secret, "account", contact_fields(&p)).await;
    let path = format!("/v1/subjects/{subject}/objections/marketing");

    let r = app
        .send(app.req(Method::PUT, &path, Some(&t.app.secret), Some("account")))
        .await;
    assert_eq!(r.status.as_u16(), 204, "{}", r.text);
    // Objecting twice is harmless.
    let r = app
        .send(app.req(Method::PUT, &path, Some(&t.app.secret), Some("account")))
        .await;
    assert_eq!(r.status.as_u16(), 204, "{}", r.text);

    for (op, status, text) in
        every_operation(&app, &t.app.secret, "marketing", &subject, &record, &p).await
    {
        assert_eq!(status, 403, "{op} under the objected purpose: {text}");
        if op != "lookup" {
            assert!(text.contains("objected"), "{op}: {text}");
        }
    }
    for purpose in ["account", "support"] {
        for (op, status, text) in
            every_operation(&app, &t.app.secret, purpose, &subject, &record, &p).await
        {
            assert!(
                (200..300).contains(&status),
                "{op} under {purpose} (not objected): {status} {text}"
            );
        }
    }
    let e = export(&app, &t.app.secret, "account", &subject)
        .await
        .expect(200);
    assert_eq!(e["subject"]["objections"], json!(["marketing"]));
    let refusals = app.refused_entries(&t.admin).await;
    assert!(
        refusals.iter().any(|e| e["purpose"] == "marketing"
            && e["subject"] == subject.as_str()
            && e["reason"].as_str().is_some_and(|r| r.contains("objected"))),
        "{refusals:#?}"
    );
    // An objection names a documented purpose: an undocumented one is no such object
    // (404), and nothing is recorded.
    let objections_before = app.count("objections");
    app.send(app.req(
        Method::PUT,
        &format!("/v1/subjects/{subject}/objections/profiling"),
        Some(&t.app.secret),
        Some("account"),
    ))
    .await
    .expect_problem(404);
    assert_eq!(app.count("objections"), objections_before);

    let r = app
        .send(app.req(Method::DELETE, &path, Some(&t.app.secret), Some("account")))
        .await;
    assert_eq!(r.status.as_u16(), 204, "{}", r.text);
    for (op, status, text) in
        every_operation(&app, &t.app.secret, "marketing", &subject, &record, &p).await
    {
        assert!(
            (200..300).contains(&status),
            "{op} under marketing after withdrawal: {status} {text}"
        );
    }
    let audit = app.audit(&t.admin).await;
    let fields: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "restriction" && e["subject"] == subject.as_str())
        .map(|e| &e["fields"])
        .collect();
    assert!(fields.contains(&&json!(["object:marketing"])), "{fields:?}");
    assert!(
        fields.contains(&&json!(["withdraw:marketing"])),
        "{fields:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 7. Deadlines over HTTP: one calendar month, two extensions at most, overdue only after.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_are_calendar_months_extend_twice_at_most_and_overdue_only_after_due() {
    let start = time::macros::datetime!(2026-01-31 10:15 UTC);
    let clock = Arc::new(custodian_vault::ManualClock::new(start));
    let app = spawn_app_with(Options {
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    let controller = app.create_controller("Délais").await;
    // Long-lived: the clock will move by weeks.
    let admin = token_of(
        &app.post_json(
            "/v1/tokens",
            &app.operator,
            None,
            &json!({
                "role": "controller_admin",
                "controller": controller,
                "label": "inbox",
                "expires_in_seconds": 31_000_000,
            }),
        )
        .await
        .expect(201),
    );
    let file = |who: u64| {
        let p = person(who);
        let controller = controller.clone();
        let app = &app;
        async move {
            file_request(
                app,
                &controller,
                &json!({ "right": "access", "contact": p.email }),
            )
            .await
            .expect(202)
        }
    };

    // 31 January + 1 month = 28 February (2026 is not a leap year), same time of day.
    let plain = file(60).await;
    assert_eq!(plain["received_at"], "2026-01-31T10:15:00Z");
    assert_eq!(plain["due_at"], "2026-02-28T10:15:00Z");
    let plain_id = plain["reference"].as_str().expect("reference").to_owned();

    let extended = file(61).await;
    let ext_id = extended["reference"]
        .as_str()
        .expect("reference")
        .to_owned();
    let extend = |months: u64, reason: &str| json!({ "action": "extend", "months": months, "reason": reason });
    let one = act(
        &app,
        &admin,
        &ext_id,
        extend(1, "complex request: three systems"),
    )
    .await
    .expect(200);
    assert_eq!(one["request"]["due_at"], "2026-03-31T10:15:00Z");
    assert_eq!(one["request"]["extended_months"], 1);
    let two = act(&app, &admin, &ext_id, extend(1, "many requests this month"))
        .await
        .expect(200);
    assert_eq!(
        two["request"]["due_at"], "2026-04-30T10:15:00Z",
        "received + 3 calendar months"
    );
    assert_eq!(two["request"]["extended_months"], 2);
    assert_eq!(
        two["request"]["extension_reason"],
        "many requests this month"
    );
    // A third extension, or one of 3 months, or of none, or an overflowing one: 422.
    for months in [1, 3, 0, u64::from(u32::MAX)] {
        act(&app, &admin, &ext_id, extend(months, "again"))
            .await
            .expect_problem(422);
    }
    let fresh = file(62).await;
    let fresh_id = fresh["reference"].as_str().expect("reference").to_owned();
    for months in [3, u64::from(u32::MAX)] {
        act(&app, &admin, &fresh_id, extend(months, "too much"))
            .await
            .expect_problem(422);
    }
    // An extension needs its reason.
    act(&app, &admin, &fresh_id, extend(1, "   "))
        .await
        .expect_problem(422);
    let listed = inbox(&app, &admin, "all").await;
    let ext_row = listed
        .iter()
        .find(|r| r["id"] == ext_id.as_str())
        .expect("listed");
    assert_eq!(ext_row["extended_months"], 2);
    assert_eq!(ext_row["due_at"], "2026-04-30T10:15:00Z");
    let fresh_row = listed
        .iter()
        .find(|r| r["id"] == fresh_id.as_str())
        .expect("listed");
    assert_eq!(
        fresh_row["extended_months"], 0,
        "refused extensions left no trace"
    );
    assert_eq!(fresh_row["due_at"], "2026-02-28T10:15:00Z");
    // Public status shows the extended due date.
    let status = app
        .send(
            app.client
                .get(app.url(&format!("/v1/public/requests/{ext_id}"))),
        )
        .await
        .expect(200);
    assert_eq!(status["due_at"], "2026-04-30T10:15:00Z");

    let overdue_ids = |rows: Vec<Value>| -> BTreeSet<String> {
        rows.iter()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(inbox(&app, &admin, "overdue").await.is_empty());
    // Exactly at the due time: not yet overdue.
    clock.advance(time::Duration::days(28));
    assert!(
        inbox(&app, &admin, "overdue").await.is_empty(),
        "overdue at the due instant"
    );
    clock.advance(time::Duration::seconds(1));
    assert_eq!(
        overdue_ids(inbox(&app, &admin, "overdue").await),
        BTreeSet::from([plain_id.clone(), fresh_id.clone()])
    );
    // 40 days after receipt: the same two; the extended one is not due before 30 April.
    clock.advance(time::Duration::days(12) - time::Duration::seconds(1));
    let overdue = inbox(&app, &admin, "overdue").await;
    assert_eq!(
        overdue_ids(overdue.clone()),
        BTreeSet::from([plain_id.clone(), fresh_id.clone()])
    );
    assert!(overdue.iter().all(|r| r["overdue"] == true));
    let open = inbox(&app, &admin, "open").await;
    assert_eq!(open.len(), 3);
    assert_eq!(
        open.iter()
            .find(|r| r["id"] == ext_id.as_str())
            .map(|r| &r["overdue"]),
        Some(&json!(false))
    );
    // A closed request is no longer overdue.
    act(
        &app,
        &admin,
        &plain_id,
        json!({ "action": "reject", "reason": "manifestly unfounded: duplicate of an answered request" }),
    )
    .await
    .expect(200);
    assert_eq!(
        overdue_ids(inbox(&app, &admin, "overdue").await),
        BTreeSet::from([fresh_id.clone()])
    );
    // Past 30 April, the extended one is overdue too.
    clock.advance(time::Duration::days(80));
    assert_eq!(
        overdue_ids(inbox(&app, &admin, "overdue").await),
        BTreeSet::from([fresh_id, ext_id])
    );
    app.get("/v1/requests?state=late", &admin.secret, None)
        .await
        .assert_problem();
}

// ---------------------------------------------------------------------------------------
// 8. The inbox, end to end: public filing → outbox → acknowledge → link → confirm
//    identity → fulfil (erasure, access), every transition audited.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_lifecycle_from_public_filing_to_fulfilment_is_audited() {
    let app = spawn_app().await;
    let t = shop(&app, "Boîte de Réception").await;
    let p = person(70);
    let (subject, _) = create(&app, &t.app.secret, "account", account_fields(&p)).await;
    let message = format!(
        "Bonjour, je suis {} ({}) et je souhaite que mes données soient effacées.",
        p.name(),
        p.address
    );
    let secrets = vec![
        p.email.clone(),
        p.name(),
        p.address.clone(),
        message.clone(),
    ];

    let receipt = file_request(
        &app,
        &t.controller,
        &json!({ "right": "erasure", "contact": p.email, "message": message }),
    )
    .await;
    receipt.assert_absent(&secrets, "the receipt");
    let receipt = receipt.expect(202);
    assert_eq!(
        keys(&receipt),
        BTreeSet::from(["reference", "right", "state", "received_at", "due_at"].map(str::to_owned))
    );
    assert_eq!(receipt["state"], "received");
    assert_eq!(receipt["right"], "erasure");
    let id = receipt["reference"].as_str().expect("reference").to_owned();
    assert!(id.starts_with("dsr_"), "{id}");

    // Durable outbox: one dsr.received row in the same controller, without personal data.
    let sql = app.sql();
    let outbox: Vec<(String, String, String)> = sql
        .prepare("SELECT controller_id, topic, payload FROM outbox")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    let (ctl, topic, payload) = &outbox[0];
    assert_eq!(ctl, &t.controller);
    assert_eq!(topic, "dsr.received");
    let payload: Value = serde_json::from_str(payload).expect("payload is JSON");
    assert_eq!(payload["request"], id.as_str());
    assert_eq!(payload["right"], "erasure");
    for s in &secrets {
        assert!(
            !payload.to_string().contains(s.as_str()),
            "the outbox payload holds {s}"
        );
    }
    // At rest the contact and message are sealed.
    let sealed: Vec<u8> = sql
        .query_row(
            "SELECT sealed_details FROM dsr_requests WHERE id = ?1",
            [&id],
            |r| r.get(0),
        )
        .expect("the request row");
    for s in &secrets {
        assert!(
            !sealed.windows(s.len()).any(|w| w == s.as_bytes()),
            "the request row holds {s} in clear"
        );
    }

    // Public status: the state, no personal data, no controller.
    let status_path = format!("/v1/public/requests/{id}");
    let status = app.send(app.client.get(app.url(&status_path))).await;
    status.assert_absent(&secrets, "the public status");
    status.assert_absent(
        &[t.controller.clone(), subject.clone()],
        "the public status",
    );
    let status = status.expect(200);
    assert_eq!(
        keys(&status),
        BTreeSet::from(["reference", "right", "state", "received_at", "due_at"].map(str::to_owned))
    );
    assert_eq!(status["state"], "received");
    // An unknown (well-formed) reference is a plain 404.
    app.send(
        app.client
            .get(app.url(&format!("/v1/public/requests/dsr_0{}", "a".repeat(25)))),
    )
    .await
    .expect_problem(404);

    // The admin sees it, decrypted, due in one month.
    let listed = inbox(&app, &t.admin, "open").await;
    assert_eq!(listed.len(), 1);
    let row = &listed[0];
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["contact"], p.email);
    assert_eq!(row["message"], message);
    assert_eq!(row["state"], "received");
    assert_eq!(row["due_at"], receipt["due_at"]);
    assert_eq!(row["subject"], Value::Null);
    // Only the admin: the app token may not read the inbox nor act on it.
    app.get("/v1/requests", &t.app.secret, None)
        .await
        .expect_problem(403);
    act(&app, &t.app, &id, json!({ "action": "acknowledge" }))
        .await
        .expect_problem(403);

    let r = act(&app, &t.admin, &id, json!({ "action": "acknowledge" }))
        .await
        .expect(200);
    assert_eq!(r["request"]["state"], "acknowledged");
    // The controller finds the subject by the contact, then links it.
    let found = app
        .lookup(&t.admin.secret, "account", "email", &p.email)
        .await
        .expect(200);
    assert_eq!(found["subjects"], json!([subject]));
    let r = act(
        &app,
        &t.admin,
        &id,
        json!({ "action": "link", "subject": subject }),
    )
    .await
    .expect(200);
    assert_eq!(r["request"]["subject"], subject.as_str());
    assert_eq!(r["request"]["state"], "acknowledged");
    // Linking to a subject that does not exist is refused.
    act(
        &app,
        &t.admin,
        &id,
        json!({ "action": "link", "subject": format!("sub_0{}", "b".repeat(25)) }),
    )
    .await
    .expect_problem(404);

    // Fulfilment before identity confirmation is refused, and nothing is erased.
    let fulfil = json!({ "action": "fulfil", "purpose": "account" });
    act(&app, &t.admin, &id, fulfil.clone())
        .await
        .expect_problem(422);
    export(&app, &t.app.secret, "account", &subject)
        .await
        .expect(200);

    let r = act(&app, &t.admin, &id, json!({ "action": "confirm_identity" }))
        .await
        .expect(200);
    assert_eq!(r["request"]["state"], "identity_confirmed");
    assert!(r["request"]["identity_confirmed_at"].is_string());

    // A note that could not be recorded is refused before anything is erased (the
    // request would otherwise stay open over an erased subject).
    act(
        &app,
        &t.admin,
        &id,
        json!({ "action": "fulfil", "purpose": "account", "note": "n".repeat(1001) }),
    )
    .await
    .expect_problem(422);
    export(&app, &t.app.secret, "account", &subject)
        .await
        .expect(200);

    let done = act(&app, &t.admin, &id, fulfil.clone()).await.expect(200);
    assert_eq!(done["request"]["state"], "fulfilled");
    assert!(done["request"]["closed_at"].is_string());
    assert_eq!(done["erasure"]["subject"], subject.as_str());
    assert_eq!(done["erasure"]["erased_now"], true);
    assert_eq!(done["export"], Value::Null);
    export(&app, &t.app.secret, "account", &subject)
        .await
        .expect_problem(410);
    let found = app
        .lookup(&t.admin.secret, "account", "email", &p.email)
        .await
        .expect(200);
    assert_eq!(found["subjects"], json!([]));
    // Closed stays closed.
    for action in [
        json!({ "action": "acknowledge" }),
        json!({ "action": "reject", "reason": "too late" }),
        fulfil.clone(),
    ] {
        act(&app, &t.admin, &id, action).await.expect_problem(422);
    }
    assert!(inbox(&app, &t.admin, "open").await.is_empty());
    let status = app
        .send(app.client.get(app.url(&status_path)))
        .await
        .expect(200);
    assert_eq!(status["state"], "fulfilled");

    // Access: fulfilment returns the export.
    let q = person(71);
    let (subject2, _) = create(&app, &t.app.secret, "account", account_fields(&q)).await;
    let access = file_request(
        &app,
        &t.controller,
        &json!({ "right": "access", "contact": q.phone }),
    )
    .await
    .expect(202);
    let id2 = access["reference"].as_str().expect("reference").to_owned();
    link_and_confirm(&app, &t.admin, &id2, &subject2).await;
    let done = act(
        &app,
        &t.admin,
        &id2,
        json!({ "action": "fulfil", "purpose": "account", "note": "sent by registered mail" }),
    )
    .await
    .expect(200);
    assert_eq!(done["request"]["state"], "fulfilled");
    assert_eq!(done["request"]["note"], "sent by registered mail");
    assert_eq!(done["export"]["subject"]["id"], subject2.as_str());
    assert_eq!(
        done["export"]["records"][0]["fields"]["email"]["value"],
        q.email
    );
    assert_valid(
        &schema_validator(EXPORT_SCHEMA_FILE),
        &done["export"],
        "the export in a fulfilment",
    );

    // Rejection, with its reason.
    let other = file_request(
        &app,
        &t.controller,
        &json!({ "right": "objection", "contact": "postal: 4 rue Imaginaire, 75011 Paris" }),
    )
    .await
    .expect(202);
    let id3 = other["reference"].as_str().expect("reference").to_owned();
    let r = act(
        &app,
        &t.admin,
        &id3,
        json!({ "action": "reject", "reason": "no data held on this person" }),
    )
    .await
    .expect(200);
    assert_eq!(r["request"]["state"], "rejected");
    assert_eq!(r["request"]["note"], "no data held on this person");

    // Every transition is in the audit trail, naming the request, never the contact.
    let audit = app.audit(&t.admin).await;
    let actions_on = |rid: &str| -> Vec<(String, String)> {
        audit
            .iter()
            .filter(|e| {
                e["fields"]
                    .as_array()
                    .is_some_and(|f| f.first() == Some(&json!(rid)))
            })
            .map(|e| {
                (
                    e["action"].as_str().unwrap_or_default().to_owned(),
                    e["outcome"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let s = |a: &str, o: &str| (a.to_owned(), o.to_owned());
    let on_first = actions_on(&id);
    for expected in [
        s("admin.request_received", "allowed"),
        s("admin.request_acknowledged", "allowed"),
        s("admin.request_linked", "allowed"),
        s("admin.request_identity_confirmed", "allowed"),
        s("admin.request_fulfilled", "refused"),
        s("admin.request_fulfilled", "allowed"),
    ] {
        assert!(
            on_first.contains(&expected),
            "{expected:?} missing from {on_first:?}"
        );
    }
    let received = audit
        .iter()
        .find(|e| e["action"] == "admin.request_received")
        .expect("received entry");
    assert_eq!(received["actor"], "public:request-form");
    assert!(
        actions_on(&id3).contains(&s("admin.request_rejected", "allowed")),
        "{:?}",
        actions_on(&id3)
    );
    assert!(
        audit.iter().any(|e| e["action"] == "erasure"
            && e["subject"] == subject.as_str()
            && e["outcome"] == "allowed"),
        "the erasure itself is audited"
    );
    assert!(
        audit.iter().any(|e| e["action"] == "admin.requests_read"),
        "reading the inbox (decrypting contacts) is audited"
    );
    let text = audit_text(&audit);
    for s in secrets.iter().chain([&q.phone, &q.email]) {
        assert!(!text.contains(s.as_str()), "the audit trail holds {s}");
    }
}

/// Fulfilment runs the operation and then closes the request, in two units. A crash between
/// them leaves the operation done and the request open; fulfilling again must close it, not
/// fail on the work already done. The operations are run here directly to reach that state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fulfilment_whose_operation_already_ran_still_closes_the_request() {
    let app = spawn_app().await;
    let t = shop(&app, "Reprise Après Panne").await;
    let open = |right: &'static str, contact: String| {
        let app = &app;
        let t = &t;
        async move {
            let r = file_request(
                app,
                &t.controller,
                &json!({ "right": right, "contact": contact }),
            )
            .await
            .expect(202);
            r["reference"].as_str().expect("reference").to_owned()
        }
    };
    let ready = |id: String, subject: String| {
        let app = &app;
        let t = &t;
        async move {
            link_and_confirm(app, &t.admin, &id, &subject).await;
            id
        }
    };

    // Erasure: the subject is already gone when the fulfilment is retried.
    let p = person(72);
    let (subject, _) = create(&app, &t.app.secret, "account", account_fields(&p)).await;
    let id = ready(open("erasure", p.email.clone()).await, subject.clone()).await;
    app.send(app.req(
        Method::DELETE,
        &format!("/v1/subjects/{subject}"),
        Some(&t.app.secret),
        Some("account"),
    ))
    .await
    .expect(200);
    let done = act(
        &app,
        &t.admin,
        &id,
        json!({ "action": "fulfil", "purpose": "account" }),
    )
    .await
    .expect(200);
    assert_eq!(done["request"]["state"], "fulfilled");
    assert_eq!(done["erasure"]["subject"], subject.as_str());
    assert_eq!(done["erasure"]["erased_now"], false);

    // Restriction: the subject is already restricted.
    let q = person(73);
    let (subject, _) = create(&app, &t.app.secret, "account", account_fields(&q)).await;
    let id = ready(open("restriction", q.email.clone()).await, subject.clone()).await;
    let restrict = json!({ "action": "fulfil", "purpose": "account" });
    let first = open("restriction", q.phone.clone()).await;
    let first = ready(first, subject.clone()).await;
    act(&app, &t.admin, &first, restrict.clone())
        .await
        .expect(200);
    let done = act(&app, &t.admin, &id, restrict).await.expect(200);
    assert_eq!(done["request"]["state"], "fulfilled");

    // Objection: the objection is already recorded.
    let r = person(74);
    let (subject, _) = create(&app, &t.app.secret, "account", account_fields(&r)).await;
    let object = json!({ "action": "fulfil", "purpose": "account", "objected_purpose": "account" });
    for contact in [r.email.clone(), r.phone.clone()] {
        let id = ready(open("objection", contact).await, subject.clone()).await;
        let done = act(&app, &t.admin, &id, object.clone()).await.expect(200);
        assert_eq!(done["request"]["state"], "fulfilled");
    }
    assert!(inbox(&app, &t.admin, "open").await.is_empty());
}

// ---------------------------------------------------------------------------------------
// 9. Adversarial public filing: unknown controller, oversized body, unknown field, a flood
//    from one address; and never a hint whether the requester is known.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_public_requests_are_refused_clearly_and_store_nothing() {
    let app = spawn_app().await;
    let t = shop(&app, "Guichet").await;
    let p = person(80);
    let stored = || (app.count("dsr_requests"), app.count("outbox"));
    assert_eq!(stored(), (0, 0));
    let good = json!({ "right": "access", "contact": p.email, "message": "Quelles données ?" });

    // Unknown controller (well-formed and malformed ids).
    for controller in [format!("ctl_0{}", "z".repeat(25)), "nope".to_owned()] {
        let r = file_request(&app, &controller, &good).await;
        r.expect_problem(404);
        r.assert_absent(std::slice::from_ref(&p.email), "unknown controller");
    }
    assert_eq!(stored(), (0, 0), "a request for nobody was stored");

    // Over 128 KiB: 413, even though the server's general limit is 1 MiB.
    let big = json!({ "right": "access", "contact": p.email, "message": "x".repeat(129 * 1024) });
    let r = file_request(&app, &t.controller, &big).await;
    r.expect_problem(413);
    assert_eq!(stored(), (0, 0), "an oversized request was stored");
    // Under 128 KiB but over the message limit: 422.
    let long = json!({ "right": "access", "contact": p.email, "message": "y".repeat(4001) });
    file_request(&app, &t.controller, &long)
        .await
        .expect_problem(422);

    // Unknown field, unknown right, missing contact, a card number: 422, nothing echoed.
    for (what, body) in [
        (
            "unknown field",
            json!({ "right": "access", "contact": p.email, "birthday": "1990-01-01" }),
        ),
        (
            "unknown right",
            json!({ "right": "be_forgotten_twice", "contact": p.email }),
        ),
        ("missing contact", json!({ "right": "access" })),
        (
            "card number",
            json!({ "right": "access", "contact": p.email, "message": "card 4111 1111 1111 1111" }),
        ),
        (
            "control characters",
            json!({ "right": "access", "contact": format!("{}\u{7}", p.email) }),
        ),
    ] {
        let r = file_request(&app, &t.controller, &body).await;
        assert_eq!(r.status.as_u16(), 422, "{what}: {}", r.text);
        r.assert_problem();
        r.assert_absent(
            &[p.email.clone(), "4111".to_owned(), "1990-01-01".to_owned()],
            what,
        );
    }
    // Not JSON at all.
    let r = app
        .send(
            app.client
                .post(app.url(&format!("/v1/public/controllers/{}/requests", t.controller)))
                .header("content-type", "text/plain")
                .body(format!("right=access&contact={}", p.email)),
        )
        .await;
    assert_eq!(r.status.as_u16(), 415, "{}", r.text);
    assert_eq!(stored(), (0, 0), "a refused request was stored");

    // And the good one goes through.
    file_request(&app, &t.controller, &good).await.expect(202);
    assert_eq!(stored(), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_gets_429_and_stores_only_what_was_accepted() {
    const LIMIT: u32 = 5;
    let app = spawn_app_with(Options {
        limits: custodian_server::Limits {
            public_requests_per_minute: LIMIT,
            ..Default::default()
        },
        connect_info: true,
        ..Options::default()
    })
    .await;
    let t = shop(&app, "Inondation").await;
    let mut accepted = 0;
    let mut limited = 0;
    for i in 0..(3 * LIMIT as u64) {
        let p = person(100 + i);
        let r = file_request(
            &app,
            &t.controller,
            &json!({ "right": "erasure", "contact": p.email }),
        )
        .await;
        match r.status.as_u16() {
            202 => {
                assert_eq!(limited, 0, "a 202 after a 429 within the same minute");
                accepted += 1;
            }
            429 => {
                r.assert_problem();
                assert!(
                    r.headers.contains_key("retry-after"),
                    "429 without Retry-After"
                );
                r.assert_absent(std::slice::from_ref(&p.email), "429");
                limited += 1;
            }
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    assert_eq!(accepted, LIMIT, "the limit is per minute per address");
    assert_eq!(limited, 2 * LIMIT);
    assert_eq!(
        app.count("dsr_requests"),
        i64::from(accepted),
        "stored requests = accepted requests"
    );
    assert_eq!(app.count("outbox"), i64::from(accepted));
    // The status endpoint shares the address's budget.
    let reference = "dsr_0".to_owned() + &"a".repeat(25);
    app.send(
        app.client
            .get(app.url(&format!("/v1/public/requests/{reference}"))),
    )
    .await
    .expect_problem(429);

    // Another address is not affected by the flood (127.0.0.0/8 is all loopback).
    let other = reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    let r = app
        .send(
            other
                .post(app.url(&format!("/v1/public/controllers/{}/requests", t.controller)))
                .json(&json!({ "right": "access", "contact": person(199).email })),
        )
        .await;
    r.expect(202);
    assert_eq!(app.count("dsr_requests"), i64::from(accepted) + 1);
    // Authenticated routes are not rate-limited by the public budget.
    inbox(&app, &t.admin, "all").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_never_reveals_whether_the_requester_is_known() {
    let app = spawn_app().await;
    let t = shop(&app, "Discrétion").await;
    let known = person(90);
    let unknown = person(91);
    create(&app, &t.app.secret, "account", account_fields(&known)).await;
    let mut answers = vec![];
    for p in [&known, &unknown] {
        let r = file_request(
            &app,
            &t.controller,
            &json!({ "right": "erasure", "contact": p.email, "message": format!("Je suis {}", p.name()) }),
        )
        .await;
        r.assert_absent(&[p.email.clone(), p.name()], "the receipt");
        let status = r.status.as_u16();
        let ct = r.content_type().to_owned();
        let header_names: BTreeSet<String> = r
            .headers
            .keys()
            .map(|k| k.as_str().to_owned())
            .filter(|k| k != "x-request-id" && k != "date")
            .collect();
        let v = r.json();
        let reference = v["reference"].as_str().expect("reference").to_owned();
        let s = app
            .send(
                app.client
                    .get(app.url(&format!("/v1/public/requests/{reference}"))),
            )
            .await;
        s.assert_absent(&[p.email.clone(), p.name()], "the status");
        answers.push((status, ct, header_names, v, s.status.as_u16(), s.json()));
    }
    let (k, u) = (&answers[0], &answers[1]);
    assert_eq!(k.0, 202);
    assert_eq!(k.0, u.0, "status");
    assert_eq!(k.1, u.1, "content type");
    assert_eq!(k.2, u.2, "header names");
    assert_eq!(keys(&k.3), keys(&u.3), "receipt shape");
    for f in ["state", "right", "received_at", "due_at"] {
        if f == "received_at" || f == "due_at" {
            assert_eq!(k.3[f].is_string(), u.3[f].is_string());
        } else {
            assert_eq!(k.3[f], u.3[f], "{f}");
        }
    }
    assert_eq!(k.4, u.4, "status endpoint status");
    assert_eq!(keys(&k.5), keys(&u.5), "status shape");
    assert_eq!(k.5["state"], u.5["state"]);
    // Nothing was looked up: the audit trail shows no retrieval for the requests.
    let audit = app.audit(&t.admin).await;
    assert!(
        !audit.iter().any(|e| e["action"] == "retrieval"),
        "the public endpoint looked somebody up: {audit:#?}"
    );
}
