//! The request inbox (DPA §5(d), §7): requests that reach the processor are passed on to
//! the controller with a due date, and every step the controller takes is audited. The
//! public side never looks the requester up, so its answer cannot reveal whether the
//! person is known.

use crate::views::*;
use crate::{CallContext, Vault, VaultError};
use custodian_core::ValidationError;
use custodian_core::audit::{Action, AdminAction, AuditDraft, ChainId};
use custodian_core::deadline::{MAX_EXTENSION_MONTHS, due};
use custodian_core::dsr::{RequestState, Right, Transition, next_state};
use custodian_core::ids::{ControllerId, DsrId};
use custodian_core::policy::{Denial, authorize_admin};
use custodian_core::principal::Principal;
use custodian_crypto::keys::ControllerKey;
use custodian_crypto::random::id_bytes;
use custodian_store::TxError;
use custodian_store::rows::{DsrRequestRow, DsrStatus};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The actor the audit trail names for requests filed on the public endpoint.
pub const PUBLIC_ACTOR: &str = "public:request-form";

#[derive(Serialize, Deserialize)]
struct Details {
    contact: String,
    message: Option<String>,
}

fn validate(req: &NewRequest) -> Result<(), ValidationError> {
    // The upper bound and control characters are judged on the text as sent, exactly as
    // the OpenAPI document states them.
    let c = req.contact.trim();
    if c.chars().count() < 3
        || req.contact.chars().count() > 320
        || req.contact.chars().any(char::is_control)
    {
        return Err(ValidationError::new(
            "contact",
            "must be 3-320 printable characters: how to reach you",
        ));
    }
    if let Some(m) = &req.message
        && m.chars().count() > 4000
    {
        return Err(ValidationError::new("message", "at most 4000 characters"));
    }
    let all = format!("{} {}", req.contact, req.message.as_deref().unwrap_or(""));
    if custodian_core::pan::contains_pan(&all) {
        return Err(ValidationError::new(
            "message",
            "contains a payment card number; never send card numbers",
        ));
    }
    Ok(())
}

fn view(row: &DsrRequestRow, details: Details, now: time::OffsetDateTime) -> RequestView {
    RequestView {
        id: row.id.clone(),
        right: row.right,
        state: row.state,
        contact: details.contact,
        message: details.message,
        received_at: row.received_at,
        due_at: row.due_at,
        overdue: row.state.is_open() && row.due_at < now,
        extended_months: row.extended_months,
        extension_reason: row.extension_reason.clone(),
        subject: row.subject.clone(),
        identity_confirmed_at: row.identity_confirmed_at,
        closed_at: row.closed_at,
        note: row.note.clone(),
    }
}

fn short_text(field: &str, s: &str) -> Result<String, ValidationError> {
    let t = s.trim();
    if t.is_empty() || s.chars().count() > 1000 || custodian_core::pan::contains_pan(t) {
        Err(ValidationError::new(
            field,
            "must be 1-1000 characters, without card numbers",
        ))
    } else {
        Ok(t.to_owned())
    }
}

impl Vault {
    fn details(
        key: &ControllerKey,
        controller: &ControllerId,
        row: &DsrRequestRow,
    ) -> Result<Details, TxError> {
        let plain: Zeroizing<Vec<u8>> = key
            .open_bound(
                "dsr-details",
                &[controller.as_str(), row.id.as_str()],
                &row.sealed_details,
            )
            .map_err(|e| {
                TxError::Store(custodian_store::StoreError::Corrupt {
                    table: "dsr_requests",
                    reason: e.to_string(),
                })
            })?;
        serde_json::from_slice(&plain).map_err(|e| {
            TxError::Store(custodian_store::StoreError::Corrupt {
                table: "dsr_requests",
                reason: e.to_string(),
            })
        })
    }

    /// Files a request from the public. The answer is the same whether or not the
    /// controller holds data on the requester: nothing is looked up.
    pub fn submit_request(
        &self,
        controller: &ControllerId,
        req: NewRequest,
        ctx: &CallContext,
    ) -> Result<RequestReceipt, VaultError> {
        validate(&req)?;
        let row = self
            .store
            .controller(controller)?
            .ok_or(VaultError::NotFound)?;
        if !row.controller.status.allows_processing() {
            return Err(VaultError::NotFound);
        }
        let key = self
            .root
            .unwrap_controller_key(controller, &row.wrapped_key)?;
        let id = DsrId::from_random(id_bytes());
        let now = self.clock.now();
        let details = Zeroizing::new(
            serde_json::to_vec(&Details {
                contact: req.contact.trim().to_owned(),
                message: req.message.clone(),
            })
            .expect("serialisable"),
        );
        let record = DsrRequestRow {
            id: id.clone(),
            right: req.right,
            state: RequestState::Received,
            sealed_details: key.seal_bound(
                "dsr-details",
                &[controller.as_str(), id.as_str()],
                &details,
            ),
            received_at: now,
            due_at: due(now, 0),
            extended_months: 0,
            extension_reason: None,
            subject: None,
            identity_confirmed_at: None,
            closed_at: None,
            note: None,
        };
        let payload = serde_json::json!({
            "event": "dsr.received",
            "request": id,
            "right": req.right,
            "due_at": record.due_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        })
        .to_string();
        let chain = ChainId::Controller(controller.clone());
        self.store.transact(controller, now, &mut |tx| {
            tx.insert_request(&record)?;
            tx.enqueue("dsr.received", &payload, now)?;
            Ok(AuditDraft::new(
                chain.clone(),
                PUBLIC_ACTOR,
                Action::Admin(AdminAction::RequestReceived),
            )
            .fields([id.as_str(), req.right.as_str()])
            .request(ctx.request.as_ref()))
        })?;
        Ok(RequestReceipt {
            reference: id,
            right: req.right,
            state: RequestState::Received,
            received_at: now,
            due_at: record.due_at,
        })
    }

    /// What a requester may learn from their reference.
    pub fn request_status(&self, id: &DsrId) -> Result<DsrStatus, VaultError> {
        self.store.request_status(id)?.ok_or(VaultError::NotFound)
    }

    /// The controller's inbox. Decrypting contact details is processing: it is audited.
    pub fn list_requests(
        &self,
        p: &Principal,
        open_only: bool,
        overdue_only: bool,
        ctx: &CallContext,
    ) -> Result<Vec<RequestView>, VaultError> {
        let controller = p.controller.clone().ok_or(VaultError::NotFound)?;
        let grant = authorize_admin(p, &controller, false)?;
        let now = self.clock.now();
        let mut out = Vec::new();
        self.store.transact(&controller, now, &mut |tx| {
            out.clear();
            let c = tx.controller()?;
            let key = self.controller_key(&controller, &c)?;
            for row in tx.requests(open_only || overdue_only)? {
                if overdue_only && row.due_at >= now {
                    continue;
                }
                let d = Self::details(&key, &controller, &row)?;
                out.push(view(&row, d, now));
            }
            Ok(AuditDraft::new(
                ChainId::Controller(controller.clone()),
                grant.actor(),
                Action::Admin(AdminAction::RequestsRead),
            )
            .fields(out.iter().map(|r| r.id.to_string()))
            .request(ctx.request.as_ref()))
        })?;
        Ok(out)
    }

    /// One step on a request. Fulfilment runs the matching operation (itself audited as
    /// that operation) and then closes the request.
    pub fn act_on_request(
        &self,
        p: &Principal,
        id: &DsrId,
        action: RequestAction,
        ctx: &CallContext,
    ) -> Result<RequestActionResult, VaultError> {
        let controller = p.controller.clone().ok_or(VaultError::NotFound)?;
        authorize_admin(p, &controller, false)?;
        let mut export = None;
        let mut erasure = None;
        if let RequestAction::Fulfil {
            purpose,
            objected_purpose,
            note,
        } = &action
        {
            // Everything that could stop the request from closing is checked before the
            // operation runs (an erasure must not happen on a request that then stays
            // open), and a refused fulfilment is audited like any refused transition.
            let refuse = |e: ValidationError| {
                self.refuse_transition(p, &controller, id, AdminAction::RequestFulfilled, e, ctx)
            };
            let current = self.peek_request(&controller, id)?;
            next_state(current.state, Transition::Fulfil).map_err(refuse)?;
            if current.right == Right::Rectification && note.is_none() {
                return Err(refuse(ValidationError::new(
                    "note",
                    "say which corrections were made",
                )));
            }
            if let Some(n) = note {
                short_text("note", n).map_err(refuse)?;
            }
            let subject = || {
                current.subject.clone().ok_or_else(|| {
                    refuse(ValidationError::new(
                        "subject",
                        "link the request to a subject first (action link)",
                    ))
                })
            };
            match current.right {
                Right::Access | Right::Portability => {
                    export = Some(self.export_subject(p, purpose, &subject()?, ctx)?)
                }
                Right::Erasure => {
                    erasure = Some(self.erase_subject(p, purpose, &subject()?, ctx)?)
                }
                Right::Restriction => self.set_restriction(p, purpose, &subject()?, true, ctx)?,
                Right::Objection => {
                    let objected = objected_purpose.as_ref().ok_or_else(|| {
                        refuse(ValidationError::new(
                            "objected_purpose",
                            "name the purpose the subject objects to",
                        ))
                    })?;
                    self.set_objection(p, purpose, &subject()?, objected, true, ctx)?;
                }
                Right::Rectification => {}
            }
        }
        let request = self.transition(p, &controller, id, &action, ctx)?;
        Ok(RequestActionResult {
            request,
            export,
            erasure,
        })
    }

    fn peek_request(
        &self,
        controller: &ControllerId,
        id: &DsrId,
    ) -> Result<DsrRequestRow, VaultError> {
        // Scoped reads exist only inside a DataTx: read, then roll back on purpose.
        let mut found = None;
        let _ = self
            .store
            .transact(controller, self.clock.now(), &mut |tx| {
                found = tx.request(id)?;
                Err(TxError::Denied(Denial::NotFound))
            });
        found.ok_or(VaultError::NotFound)
    }

    fn transition(
        &self,
        p: &Principal,
        controller: &ControllerId,
        id: &DsrId,
        action: &RequestAction,
        ctx: &CallContext,
    ) -> Result<RequestView, VaultError> {
        let now = self.clock.now();
        let (t, audit_action) = match action {
            RequestAction::Acknowledge => {
                (Transition::Acknowledge, AdminAction::RequestAcknowledged)
            }
            RequestAction::ConfirmIdentity => (
                Transition::ConfirmIdentity,
                AdminAction::RequestIdentityConfirmed,
            ),
            RequestAction::Link { .. } => (Transition::Link, AdminAction::RequestLinked),
            RequestAction::Extend { .. } => (Transition::Extend, AdminAction::RequestExtended),
            RequestAction::Reject { .. } => (Transition::Reject, AdminAction::RequestRejected),
            RequestAction::Fulfil { .. } => (Transition::Fulfil, AdminAction::RequestFulfilled),
        };
        let mut out = None;
        let result = self.store.transact(controller, now, &mut |tx| {
            let mut row = tx.request(id)?.ok_or(Denial::NotFound)?;
            row.state = next_state(row.state, t).map_err(Denial::Invalid)?;
            match action {
                RequestAction::ConfirmIdentity => row.identity_confirmed_at = Some(now),
                RequestAction::Link { subject } => {
                    if tx.subject(subject)?.is_none() {
                        return Err(Denial::NotFound.into());
                    }
                    row.subject = Some(subject.clone());
                }
                RequestAction::Extend { months, reason } => {
                    // Saturating: `months` comes from the caller, and a wrapped sum would
                    // pass the check below and shorten the deadline.
                    let total = row.extended_months.saturating_add(*months);
                    if *months == 0 || total > MAX_EXTENSION_MONTHS {
                        return Err(Denial::Invalid(ValidationError::new(
                            "months",
                            "a deadline can be extended by two further months at most (Art. 12(3))",
                        ))
                        .into());
                    }
                    row.extension_reason =
                        Some(short_text("reason", reason).map_err(Denial::Invalid)?);
                    row.extended_months = total;
                    row.due_at = due(row.received_at, total);
                }
                RequestAction::Reject { reason } => {
                    row.note = Some(short_text("reason", reason).map_err(Denial::Invalid)?);
                    row.closed_at = Some(now);
                }
                RequestAction::Fulfil { note, .. } => {
                    if row.right == Right::Rectification && note.is_none() {
                        return Err(Denial::Invalid(ValidationError::new(
                            "note",
                            "say which corrections were made",
                        ))
                        .into());
                    }
                    row.note = note
                        .as_deref()
                        .map(|n| short_text("note", n))
                        .transpose()
                        .map_err(Denial::Invalid)?;
                    row.closed_at = Some(now);
                }
                RequestAction::Acknowledge => {}
            }
            tx.update_request(&row)?;
            let c = tx.controller()?;
            let key = self.controller_key(controller, &c)?;
            let d = Self::details(&key, controller, &row)?;
            out = Some(view(&row, d, now));
            let mut draft = AuditDraft::new(
                ChainId::Controller(controller.clone()),
                p.actor(),
                Action::Admin(audit_action),
            )
            .fields([id.as_str()])
            .request(ctx.request.as_ref());
            draft.subject = row.subject.clone();
            Ok(draft)
        });
        match result {
            Ok(_) => Ok(out.expect("transition ran")),
            Err(TxError::Denied(Denial::Invalid(e))) => {
                Err(self.refuse_transition(p, controller, id, audit_action, e, ctx))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records a refused step on a request, then returns the error.
    fn refuse_transition(
        &self,
        p: &Principal,
        controller: &ControllerId,
        id: &DsrId,
        audit_action: AdminAction,
        e: ValidationError,
        ctx: &CallContext,
    ) -> VaultError {
        self.audit_refusal(
            p,
            AuditDraft::new(
                ChainId::Controller(controller.clone()),
                p.actor(),
                Action::Admin(audit_action),
            )
            .fields([id.as_str()])
            .refused(format!("invalid: {e}"))
            .request(ctx.request.as_ref()),
        );
        VaultError::Invalid(e)
    }
}
