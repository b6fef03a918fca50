//! `serve --demo`: a demo controller with purposes, tokens and synthetic people, so a
//! newcomer sees data flow at once. The people are generated from fixed lists: realistic
//! in shape, belonging to nobody.

use custodian_core::category::{DataCategory, SubjectCategory};
use custodian_core::controller::ControllerName;
use custodian_core::operation::Operation;
use custodian_core::policy::OperatorGrant;
use custodian_core::principal::Role;
use custodian_core::purpose::{LawfulBasis, Purpose, PurposeName};
use custodian_core::record::{FieldInput, FieldName, FieldValue, RecordMeta};
use custodian_core::region::{MemberState, RegionId};
use custodian_vault::views::{NewController, NewRecord, NewSubject};
use custodian_vault::{CallContext, Vault};
use std::collections::BTreeMap;

const FIRST: &[&str] = &[
    "Camille", "Louis", "Léa", "Hugo", "Chloé", "Lucas", "Manon", "Jules", "Inès", "Gabriel",
    "Sarah", "Arthur", "Emma", "Nathan", "Zoé", "Raphaël", "Anna", "Théo", "Jade", "Mathis",
    "Lina", "Noah", "Alice", "Sacha",
];
const LAST: &[&str] = &[
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "David", "Bertrand", "Roux",
    "Vincent", "Fournier", "Morel", "Girard",
];
const STREETS: &[&str] = &[
    "rue de la Paix",
    "avenue Jean Jaurès",
    "boulevard Voltaire",
    "rue Victor Hugo",
    "place de la République",
    "rue du Moulin",
];
const CITIES: &[&str] = &[
    "75011 Paris",
    "69003 Lyon",
    "13001 Marseille",
    "31000 Toulouse",
    "44000 Nantes",
    "33000 Bordeaux",
    "59000 Lille",
];
const JOBS: &[&str] = &[
    "Product manager",
    "Accountant",
    "Nurse",
    "Software engineer",
    "Teacher",
    "Architect",
    "Pharmacist",
];

fn purpose(
    name: &str,
    description: &str,
    basis: LawfulBasis,
    cats: &[&str],
    ops: &[Operation],
    days: u32,
) -> Purpose {
    Purpose {
        name: PurposeName::parse(name).expect("demo purpose name"),
        description: description.into(),
        lawful_basis: basis,
        categories: cats
            .iter()
            .map(|c| DataCategory::parse(c).expect("catalogued"))
            .collect(),
        operations: ops.iter().copied().collect(),
        retention_days: days,
    }
}

fn field(cat: &str, value: String) -> FieldInput {
    FieldInput {
        category: DataCategory::parse(cat).expect("catalogued"),
        value: FieldValue::Text(value),
    }
}

fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'é' | 'è' | 'ê' => 'e',
            'ï' => 'i',
            'ë' => 'e',
            c => c,
        })
        .collect::<String>()
        .to_lowercase()
}

/// Seeds the demo and returns what to print: tokens and a first command to try.
pub fn seed(vault: &Vault, addr: std::net::SocketAddr) -> Result<String, String> {
    let op = OperatorGrant::local_cli();
    let ctx = CallContext::default();
    let err = |e: custodian_vault::VaultError| format!("demo seed failed: {e}");
    let controller = vault
        .create_controller(
            &op,
            NewController {
                name: ControllerName::parse("Demo Shop SAS").expect("name"),
                region: RegionId::parse("osc-fr1").expect("region"),
                agreement_effective: time::macros::date!(2026 - 01 - 01),
                governing_law: MemberState::parse("FR").expect("FR"),
            },
            &ctx,
        )
        .map_err(err)?;
    let admin = vault
        .issue_token_locally(
            &op,
            Role::ControllerAdmin,
            Some(controller.id.clone()),
            "demo admin",
            7 * 86_400,
        )
        .map_err(err)?;
    let admin_p = vault
        .authenticate(&admin.secret.clone().into())
        .map_err(err)?;
    use Operation::*;
    for p in [
        purpose(
            "support",
            "Answer customers' support requests",
            LawfulBasis::Contract,
            &["user.name", "user.contact", "user.content"],
            &[Collection, Recording, Retrieval, Consultation, Alteration],
            365,
        ),
        purpose(
            "billing",
            "Invoice customers and keep invoices as the law requires",
            LawfulBasis::LegalObligation,
            &["user.name", "user.contact", "user.financial"],
            &[Collection, Recording, Retrieval, Consultation, Alteration],
            3650,
        ),
        purpose(
            "data-subject-rights",
            "Answer data subjects' requests (GDPR Art. 15-21)",
            LawfulBasis::LegalObligation,
            &["user"],
            &[
                Retrieval,
                Consultation,
                Alteration,
                Restriction,
                Erasure,
                Disclosure,
            ],
            30,
        ),
    ] {
        vault.document_purpose(&admin_p, p, &ctx).map_err(err)?;
    }
    let app = vault
        .issue_token_locally(
            &op,
            Role::ControllerApp,
            Some(controller.id.clone()),
            "demo application",
            7 * 86_400,
        )
        .map_err(err)?;
    let app_p = vault
        .authenticate(&app.secret.clone().into())
        .map_err(err)?;
    let support = PurposeName::parse("support").expect("name");
    let mut first = None;
    for i in 0..24usize {
        let given = FIRST[i % FIRST.len()];
        let family = LAST[(i * 7) % LAST.len()];
        let mut fields = BTreeMap::new();
        let f = |s: &str| FieldName::parse(s).expect("field name");
        fields.insert(f("name"), field("user.name", format!("{given} {family}")));
        fields.insert(
            f("email"),
            field(
                "user.contact.email",
                format!("{}.{}@example.org", ascii(given), ascii(family)),
            ),
        );
        fields.insert(
            f("phone"),
            field(
                "user.contact.phone_number",
                format!(
                    "+33 6 {:02} {:02} {:02} {:02}",
                    10 + i,
                    (i * 13) % 100,
                    (i * 29) % 100,
                    (i * 41) % 100
                ),
            ),
        );
        fields.insert(
            f("address"),
            field(
                "user.contact.address",
                format!(
                    "{} {}, {}",
                    1 + i * 3,
                    STREETS[i % STREETS.len()],
                    CITIES[i % CITIES.len()]
                ),
            ),
        );
        if i % 3 == 0 {
            fields.insert(
                f("job_title"),
                field("user.contact", JOBS[i % JOBS.len()].to_owned()),
            );
        }
        let created = vault
            .create_subject(
                &app_p,
                &support,
                NewSubject {
                    category: if i % 5 == 0 {
                        SubjectCategory::EndUser
                    } else {
                        SubjectCategory::Customer
                    },
                    record: Some(NewRecord {
                        fields,
                        meta: RecordMeta {
                            source: Some("signup form".into()),
                            recipients: vec!["support team".into()],
                            automated_decision: None,
                        },
                        expires_at: None,
                    }),
                },
                &ctx,
            )
            .map_err(err)?;
        first.get_or_insert(created.id);
    }
    vault.checkpoint().map_err(err)?;
    let first = first.expect("seeded");
    Ok(format!(
        "demo: controller {} (\"Demo Shop SAS\", region osc-fr1) with 24 synthetic customers\n\
         demo: controller admin token: {}\n\
         demo: application token:      {}\n\
         demo: try  curl -s -H 'Authorization: Bearer {}' -H 'Custodian-Purpose: support' http://{addr}/v1/subjects/{first}",
        controller.id, admin.secret, app.secret, app.secret
    ))
}
