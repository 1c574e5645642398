//! The order book: takes orders (prices them from a catalogue mirror, reserves their lines in
//! the inventory, assigns IDs, stages their rows) and keeps the orders awaiting payment.
//!
//! It is the Rust side of `pyorder.orders`: the catalogue mirror is kept current by
//! `pyorder.catalog` (SKU prices, currencies and owners; region codes), and the pending orders
//! are rebuilt from the store at start. Refusals change nothing.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::parse::{OrderRequest, MAX_QUANTITY};
use super::pending::{PendingOrder, PendingOrders};
use super::rows::{
    DecisionRow, NewLine, NewOrder, OrderRisk, OrderRows, IN_REVIEW, PENDING_PAYMENT,
};
use crate::ids::{IdError, IdGenerator};
use crate::inventory::{status, BatchOrders, Inventory, InventoryError, MatchPolicy, Reservation};
use crate::risk::{key_hash, Assessment, OrderEvent, Outcome as RiskOutcome, RiskEngine, Subject};

/// What the intake needs to know of a SKU.
#[derive(Debug, Clone)]
pub struct SkuEntry {
    /// Unit price, minor units of `currency`.
    pub price: i64,
    pub currency: [u8; 3],
    /// Principal key of the owner.
    pub merchant: Arc<str>,
    /// When it goes on sale (ms since the Unix epoch, UTC), as a flash sale's start: orders
    /// before then are refused `not_on_sale`. None: on sale from its creation.
    pub release_ms: Option<i64>,
}

/// Why one order was refused: an HTTP status, a stable code, a message, and details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// `details.field`: which part of the order is at fault.
    pub field: Option<&'static str>,
    /// `details.sku`: the SKU at fault.
    pub sku: Option<u32>,
    /// `details.decision`: the risk decision that refused it (its id).
    pub decision: Option<i64>,
}

impl Refusal {
    fn invalid(message: String, sku: Option<u32>) -> Self {
        Self {
            status: 422,
            code: "invalid_input",
            message,
            field: Some("lines"),
            sku,
            decision: None,
        }
    }

    /// The refusal for an inventory status (see `inventory::status`) at `sku`.
    pub fn from_status(code: u8, sku: u32) -> Self {
        match code {
            status::OUT_OF_STOCK => Self {
                status: 409,
                code: "out_of_stock",
                message: format!("SKU {sku} is out of stock for this order"),
                field: None,
                sku: Some(sku),
                decision: None,
            },
            status::LIMIT_EXCEEDED => Self {
                status: 409,
                code: "purchase_limit_exceeded",
                message: format!(
                    "SKU {sku} is limited per buyer and this order would exceed the limit"
                ),
                field: None,
                sku: Some(sku),
                decision: None,
            },
            other => Self {
                status: 422,
                code: "invalid_input",
                message: format!("the order was refused (status {other})"),
                field: None,
                sku: Some(sku),
                decision: None,
            },
        }
    }
}

/// The outcome of one order.
#[derive(Debug, Clone)]
pub enum Outcome {
    Created(Arc<NewOrder>),
    Refused(Refusal),
}

/// Who places orders, and when.
pub struct Placement<'a> {
    pub buyer: &'a str,
    /// The number the inventory counts purchase limits by (`pyorder.auth.buyer_number`).
    pub buyer_number: u64,
    pub now_ms: u64,
    /// What the connection says of the client, for risk control.
    pub client: Client<'a>,
}

/// What the server knows of the client beyond the body (risk control's signals).
#[derive(Clone, Copy, Debug, Default)]
pub struct Client<'a> {
    /// The client's IP: the connection's peer, or `X-Forwarded-For` behind a trusted proxy.
    pub ip: Option<&'a str>,
    /// The region the IP maps to (a region code, as the orders' regions), when known.
    pub ip_region: Option<&'a str>,
    /// `pyorder.risk.events.AgentClass`: 0 unknown, 1 browser, 2 app, 3 headless or library.
    pub agent: u8,
    /// When the buyer's account was made, when the caller knows it.
    pub account_created_ms: Option<i64>,
}

/// Failures that are not a refusal of an order: the caller should answer 5xx.
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Ids(#[from] IdError),
}

/// A priced line: (sku, quantity, unit price, merchant).
type PricedLine = (u32, u32, i64, Arc<str>);
/// A reservation (id, serving warehouse per line) or why the order was refused.
type Reserved = Result<(i64, SmallVec<[u32; 1]>), Refusal>;

struct Prepared {
    region: u32,
    region_code: Arc<str>,
    /// The region code's risk key (`key_hash`), made once per region.
    region_key: u64,
    currency: [u8; 3],
    lines: SmallVec<[PricedLine; 1]>,
    /// The latest release time of its SKUs that have one (risk control's "seconds since
    /// release": a flash sale's item ordered with others counts as the flash sale's).
    release_ms: Option<i64>,
}

/// Catalogue mirror and pending orders.
#[derive(Default)]
pub struct OrderBook {
    skus: Vec<Option<SkuEntry>>,
    /// Region code -> (the inventory's region, the code, its risk key).
    regions: FxHashMap<Box<str>, (u32, Arc<str>, u64)>,
    buyers: FxHashMap<Box<str>, Arc<str>>,
    /// Orders awaiting payment, by id and by reservation: 32 bytes each, in a log that never
    /// moves its records as it grows (see `pending`).
    pending: PendingOrders,
    /// How long a new order holds its units awaiting payment, ms.
    pub payment_timeout_ms: u64,
    /// Risk control, when on: every order is assessed before it reserves anything.
    pub risk: Option<Arc<RiskEngine>>,
    /// How long an order held for review keeps its units before it expires unreviewed, ms.
    pub review_hold_ms: u64,
}

/// How long an order held for review keeps its units by default: 72 hours.
pub const DEFAULT_REVIEW_HOLD_MS: u64 = 72 * 3_600_000;

impl OrderBook {
    pub fn new(payment_timeout_ms: u64) -> Self {
        Self {
            payment_timeout_ms,
            review_hold_ms: DEFAULT_REVIEW_HOLD_MS,
            ..Self::default()
        }
    }

    /// An order held for review now awaits payment: its payment deadline starts now.
    /// Returns the new deadline, or None when the order is not held for review.
    pub fn approve(
        &mut self,
        inventory: &Inventory,
        order_id: i64,
        now_ms: u64,
    ) -> Result<Option<u64>, BookError> {
        let Some(order) = self.pending.get(order_id).copied() else {
            return Ok(None);
        };
        if !order.in_review {
            return Ok(None);
        }
        let deadline = now_ms.saturating_add(self.payment_timeout_ms);
        inventory.set_deadline(order.reservation as u64, deadline)?;
        self.pending.approve(order_id);
        Ok(Some(deadline))
    }

    pub fn set_sku(&mut self, sku: u32, entry: SkuEntry) {
        let i = sku as usize;
        if self.skus.len() <= i {
            self.skus.resize(i + 1, None);
        }
        self.skus[i] = Some(entry);
    }

    /// Map a region code to the inventory's region number.
    pub fn set_region(&mut self, code: &str, region: u32) {
        self.regions
            .insert(Box::from(code), (region, Arc::from(code), key_hash(code)));
    }

    pub fn pending(&self, order_id: i64) -> Option<PendingOrder> {
        self.pending.get(order_id).copied()
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Bytes the pending orders' records take in the book (their reservations not counted).
    pub fn pending_bytes(&self) -> usize {
        self.pending.heap_bytes()
    }

    pub fn order_of_reservation(&self, reservation: i64) -> Option<i64> {
        self.pending.order_of_reservation(reservation)
    }

    /// Hold an order as pending (at rebuild, or after placing it).
    pub fn add_pending(&mut self, order: PendingOrder) {
        self.pending.insert(order);
    }

    /// Stop holding an order as pending (paid, cancelled, expired).
    pub fn take_pending(&mut self, order_id: i64) -> Option<PendingOrder> {
        self.pending.remove(order_id)
    }

    /// Expire up to `limit` reservations past their deadline (`Inventory::expire_due`) and
    /// stop holding their orders: per reservation, its id, the order that held it (None for a
    /// reservation made outside the book) and what it held.
    pub fn expire_due(
        &mut self,
        inventory: &Inventory,
        now_ms: u64,
        limit: usize,
    ) -> Vec<(u64, Option<PendingOrder>, Reservation)> {
        let mut out = Vec::new();
        inventory.expire_due_with(now_ms, limit, |id, reservation| {
            let order = self
                .pending
                .order_of_reservation(id as i64)
                .and_then(|oid| self.pending.remove(oid));
            out.push((id, order, reservation));
        });
        out
    }

    /// One `Arc` per buyer subject, shared by all their orders.
    fn buyer(&mut self, subject: &str) -> Arc<str> {
        if let Some(b) = self.buyers.get(subject) {
            return Arc::clone(b);
        }
        if self.buyers.len() >= 1 << 20 {
            self.buyers.clear(); // a cache, not a registry: bounded
        }
        let b: Arc<str> = Arc::from(subject);
        self.buyers.insert(Box::from(subject), Arc::clone(&b));
        b
    }

    /// Take `requests` in order: each is created or refused, with the same outcome as placing
    /// them one after another. Created orders are staged in `rows` and held as pending.
    pub fn place(
        &mut self,
        inventory: &Inventory,
        ids: &IdGenerator,
        who: &Placement<'_>,
        requests: &[OrderRequest<'_>],
        rows: &mut OrderRows,
    ) -> Result<Vec<Outcome>, BookError> {
        let mut prepared: Vec<Result<Prepared, Refusal>> = requests
            .iter()
            .map(|r| self.prepare(r, who.now_ms))
            .collect();
        let ok = prepared.iter().filter(|p| p.is_ok()).count();
        if ok == 0 {
            return Ok(prepared
                .into_iter()
                .map(|p| Outcome::Refused(p.err().unwrap_or_else(|| unreachable!())))
                .collect());
        }
        // IDs first: an ID is never reused, so those of refused orders are simply skipped.
        let mut order_ids = vec![0u64; ok];
        ids.fill(&mut order_ids, None)?;
        let mut next_id = order_ids.into_iter();
        let ids_of: Vec<i64> = prepared
            .iter()
            .map(|p| match p {
                Ok(_) => next_id.next().unwrap_or_default() as i64,
                Err(_) => 0,
            })
            .collect();
        let buyer = self.buyer(who.buyer);
        // Risk control decides before anything is reserved: a blocked order reserves nothing.
        // An allowed order's decision goes in its own row (`allowed`, then `NewOrder::risk`);
        // the others are staged at once, in `rows.decisions` from `staged` on; those of the
        // orders the inventory then refuses are taken back (nothing was decided about an order
        // that could not be placed), so are those of orders not placed when this fails.
        let staged = rows.decisions.len();
        let mut decided: Vec<Option<RiskOutcome>> = Vec::new();
        let mut allowed: Vec<Option<OrderRisk>> = Vec::new();
        if let Some(engine) = &self.risk {
            decided.resize(requests.len(), None);
            allowed.resize(requests.len(), None);
            let mut assessed = assess(engine, who, requests, &prepared, &ids_of).into_iter();
            for (i, p) in prepared.iter_mut().enumerate() {
                let Ok(ready) = &*p else { continue };
                let Some(a) = assessed.next() else { break };
                let outcome = a.decision.outcome;
                decided[i] = Some(outcome);
                // An allowed order keeps its decision in its row, unless it is sampled: then
                // it is a decision row with the features, for a fraud report to label.
                if outcome == RiskOutcome::Allow && a.features.is_none() {
                    allowed[i] = Some(order_risk(a, engine));
                    continue;
                }
                rows.decisions.push(decision_row(
                    ids_of[i], &buyer, ready, who.now_ms, a, engine,
                ));
                if outcome == RiskOutcome::Block {
                    *p = Err(Refusal {
                        status: 422,
                        code: "risk_blocked",
                        message: "the order was declined by risk control".into(),
                        field: None,
                        sku: None,
                        decision: Some(ids_of[i]),
                    });
                }
            }
        }
        // The decisions of the orders from request `from` on that were not blocked: to take
        // back when those orders are not placed.
        let unplaced = |from: usize| -> SmallVec<[i64; 8]> {
            (from..decided.len())
                .filter(|&j| decided[j].is_some_and(|o| o != RiskOutcome::Block))
                .map(|j| ids_of[j])
                .collect()
        };
        let ok = prepared.iter().filter(|p| p.is_ok()).count();
        let reserved = match ok {
            0 => Ok(Vec::new()),
            1 => {
                let p = prepared
                    .iter()
                    .flatten()
                    .next()
                    .unwrap_or_else(|| unreachable!());
                self.reserve_one(inventory, who, p).map(|r| vec![r])
            }
            _ => self.reserve_many(inventory, who, &prepared, ok),
        };
        let reserved = match reserved {
            Ok(reserved) => reserved,
            Err(e) => {
                unstage(rows, staged, &unplaced(0));
                return Err(e);
            }
        };
        let deadline = who.now_ms.saturating_add(self.payment_timeout_ms);
        let review_deadline = who.now_ms.saturating_add(self.review_hold_ms);
        let mut reserved = reserved.into_iter();
        let mut out = Vec::with_capacity(requests.len());
        let mut refused: SmallVec<[i64; 8]> = SmallVec::new();
        for (i, (req, p)) in requests.iter().zip(prepared).enumerate() {
            let p = match p {
                Err(refusal) => {
                    out.push(Outcome::Refused(refusal));
                    continue;
                }
                Ok(p) => p,
            };
            let id = ids_of[i];
            match reserved.next() {
                Some(Ok((reservation, warehouses))) => {
                    let in_review = decided.get(i) == Some(&Some(RiskOutcome::Review));
                    if in_review {
                        if let Err(e) = inventory.set_deadline(reservation as u64, review_deadline)
                        {
                            refused.extend(unplaced(i));
                            unstage(rows, staged, &refused);
                            return Err(e.into());
                        }
                    }
                    let order = Arc::new(new_order(
                        id,
                        &buyer,
                        p,
                        req,
                        reservation,
                        &warehouses,
                        who.now_ms,
                        if in_review { review_deadline } else { deadline },
                        if in_review {
                            IN_REVIEW
                        } else {
                            PENDING_PAYMENT
                        },
                        allowed.get_mut(i).and_then(Option::take),
                    ));
                    self.add_pending(PendingOrder {
                        id: order.id,
                        reservation: order.reservation,
                        total: order.total,
                        currency: order.currency,
                        in_review,
                    });
                    rows.push(Arc::clone(&order));
                    out.push(Outcome::Created(order));
                }
                // Refused by the inventory: no order, and risk control decided nothing.
                Some(Err(refusal)) => {
                    if decided.get(i).is_some_and(Option::is_some) {
                        refused.push(id);
                    }
                    out.push(Outcome::Refused(refusal));
                }
                None => unreachable!("one reservation outcome per prepared order"),
            }
        }
        unstage(rows, staged, &refused);
        Ok(out)
    }

    /// The catalogue checks of one order, in the order a person reads it: each line's SKU,
    /// quantity, uniqueness and currency, then the delivery region.
    fn prepare(&self, req: &OrderRequest<'_>, now_ms: u64) -> Result<Prepared, Refusal> {
        let mut currency: Option<[u8; 3]> = None;
        let mut release_ms: Option<i64> = None;
        let mut lines = SmallVec::with_capacity(req.lines.len());
        for (i, &(sku, qty)) in req.lines.iter().enumerate() {
            let Some(entry) = self.skus.get(sku as usize).and_then(Option::as_ref) else {
                return Err(Refusal::invalid(
                    format!("SKU {sku} does not exist"),
                    Some(sku),
                ));
            };
            if !(1..=MAX_QUANTITY).contains(&u64::from(qty)) {
                return Err(Refusal::invalid(
                    format!("quantity of SKU {sku} must be between 1 and {MAX_QUANTITY}"),
                    None,
                ));
            }
            if req.lines[..i].iter().any(|&(s, _)| s == sku) {
                return Err(Refusal::invalid(
                    format!("SKU {sku} appears twice; merge the lines"),
                    None,
                ));
            }
            match currency {
                Some(c) if c != entry.currency => {
                    return Err(Refusal::invalid(
                        "all lines of an order must share one currency".into(),
                        None,
                    ))
                }
                _ => currency = Some(entry.currency),
            }
            if let Some(release) = entry.release_ms {
                if i64::try_from(now_ms).unwrap_or(i64::MAX) < release {
                    return Err(Refusal {
                        status: 409,
                        code: "not_on_sale",
                        message: format!(
                            "SKU {sku} goes on sale at {release} (ms since the Unix epoch, UTC)"
                        ),
                        field: None,
                        sku: Some(sku),
                        decision: None,
                    });
                }
                release_ms = release_ms.max(Some(release));
            }
            lines.push((sku, qty, entry.price, Arc::clone(&entry.merchant)));
        }
        let code: &str = &req.address.region;
        let Some((region, region_code, region_key)) = self.regions.get(code) else {
            return Err(Refusal {
                decision: None,
                status: 422,
                code: "unknown_region",
                message: format!("we do not deliver to region '{code}'"),
                field: Some("address.region"),
                sku: None,
            });
        };
        Ok(Prepared {
            region: *region,
            region_code: Arc::clone(region_code),
            region_key: *region_key,
            currency: currency.unwrap_or(*b"XXX"),
            lines,
            release_ms,
        })
    }

    fn reserve_one(
        &self,
        inventory: &Inventory,
        who: &Placement<'_>,
        p: &Prepared,
    ) -> Result<Reserved, BookError> {
        let skus: SmallVec<[u32; 4]> = p.lines.iter().map(|l| l.0).collect();
        let qtys: SmallVec<[u32; 4]> = p.lines.iter().map(|l| l.1).collect();
        match inventory.reserve(
            &skus,
            &qtys,
            who.buyer_number,
            Some(p.region),
            MatchPolicy::PreferOneParcel,
            self.payment_timeout_ms,
            who.now_ms,
        ) {
            Ok((id, warehouses)) => Ok(Ok((id as i64, warehouses))),
            Err(e) => match refused_sku(&e) {
                Some(sku) => Ok(Err(Refusal::from_status(e.status(), sku))),
                None => Err(e.into()),
            },
        }
    }

    fn reserve_many(
        &self,
        inventory: &Inventory,
        who: &Placement<'_>,
        prepared: &[Result<Prepared, Refusal>],
        ok: usize,
    ) -> Result<Vec<Reserved>, BookError> {
        let mut skus = Vec::with_capacity(ok);
        let mut qtys = Vec::with_capacity(ok);
        let mut offsets = Vec::with_capacity(ok + 1);
        let mut regions = Vec::with_capacity(ok);
        offsets.push(0u32);
        for p in prepared.iter().flatten() {
            for l in &p.lines {
                skus.push(l.0);
                qtys.push(l.1);
            }
            offsets.push(skus.len() as u32);
            regions.push(p.region);
        }
        let buyers = vec![who.buyer_number; ok];
        let batch = BatchOrders {
            skus: &skus,
            quantities: &qtys,
            offsets: Some(&offsets),
            buyers: Some(&buyers),
            regions: Some(&regions),
        };
        let res = inventory.reserve_batch(
            &batch,
            MatchPolicy::PreferOneParcel,
            self.payment_timeout_ms,
            who.now_ms,
        )?;
        Ok((0..ok)
            .map(|i| {
                let items = offsets[i] as usize..offsets[i + 1] as usize;
                if res.status[i] == status::OK {
                    Ok((
                        res.reservation[i] as i64,
                        SmallVec::from_slice(&res.warehouse[items]),
                    ))
                } else {
                    let item = usize::try_from(res.failed_item[i]).unwrap_or(items.start);
                    Err(Refusal::from_status(res.status[i], skus[item]))
                }
            })
            .collect())
    }
}

/// Takes back the decisions staged from `staged` on whose id is in `ids`.
fn unstage(rows: &mut OrderRows, staged: usize, ids: &[i64]) {
    if ids.is_empty() {
        return;
    }
    let mut kept = staged;
    for j in staged..rows.decisions.len() {
        if !ids.contains(&rows.decisions[j].id) {
            rows.decisions.swap(kept, j);
            kept += 1;
        }
    }
    rows.decisions.truncate(kept);
}

/// The SKU an inventory refusal names, if it is a refusal of the order (not a misuse).
fn refused_sku(e: &InventoryError) -> Option<u32> {
    match e {
        InventoryError::OutOfStock { sku }
        | InventoryError::PurchaseLimit { sku, .. }
        | InventoryError::UnknownSku { sku }
        | InventoryError::DuplicateSku { sku } => Some(*sku),
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
fn new_order(
    id: i64,
    buyer: &Arc<str>,
    p: Prepared,
    req: &OrderRequest<'_>,
    reservation: i64,
    warehouses: &[u32],
    now_ms: u64,
    deadline_ms: u64,
    status: &'static str,
    risk: Option<OrderRisk>,
) -> NewOrder {
    let lines: SmallVec<[NewLine; 1]> = p
        .lines
        .into_iter()
        .zip(warehouses)
        .map(
            |((sku, quantity, unit_price, merchant), &warehouse)| NewLine {
                sku,
                warehouse,
                quantity,
                unit_price,
                merchant,
            },
        )
        .collect();
    NewOrder {
        id,
        buyer: Arc::clone(buyer),
        currency: p.currency,
        total: lines
            .iter()
            .map(|l| i64::from(l.quantity) * l.unit_price)
            .sum(),
        region: p.region_code,
        address: req.address.to_json().into_boxed_str(),
        reservation,
        created_ms: now_ms as i64,
        deadline_ms: deadline_ms as i64,
        lines,
        status,
        risk,
    }
}

/// The risk events of the orders that passed their catalogue checks, assessed by `engine` in
/// one pass: one assessment per such order, in their order.
fn assess(
    engine: &RiskEngine,
    who: &Placement<'_>,
    requests: &[OrderRequest<'_>],
    prepared: &[Result<Prepared, Refusal>],
    ids: &[i64],
) -> Vec<Assessment> {
    let client = &who.client;
    let buyer_key = key_hash(who.buyer);
    let ip = client.ip.map(key_hash);
    let ip_region = client.ip_region.map(key_hash);
    let mut address_key = String::with_capacity(128);
    let mut events = Vec::with_capacity(prepared.len());
    let mut subjects = Vec::with_capacity(prepared.len());
    for ((req, p), &id) in requests.iter().zip(prepared).zip(ids) {
        let Ok(p) = p else { continue };
        let ctx = &req.context;
        let device = ctx.device_id.as_deref().map(key_hash);
        let email = ctx.email_hash.as_deref().map(key_hash);
        let phone = ctx.phone_hash.as_deref().map(key_hash);
        req.address.risk_key_into(&mut address_key);
        let address = key_hash(&address_key);
        let (sku, quantity) = p.lines.first().map_or((0, 0), |l| (l.0, l.1));
        events.push(OrderEvent {
            at_ms: who.now_ms as i64,
            buyer: who.buyer_number,
            account_created_ms: client.account_created_ms,
            amount: p.lines.iter().map(|l| i64::from(l.1) * l.2).sum(),
            sku: u64::from(sku),
            quantity: i64::from(quantity),
            sku_release_ms: p.release_ms,
            device,
            ip,
            ip_region,
            email,
            phone,
            agent: client.agent,
            address: Some(address),
            ship_region: Some(p.region_key),
        });
        let mut merchants: SmallVec<[&str; 2]> = SmallVec::new();
        for l in &p.lines {
            if !merchants.contains(&&*l.3) {
                merchants.push(&l.3);
            }
        }
        subjects.push(Subject {
            keys: [
                Some(buyer_key),
                device,
                ip,
                Some(address),
                None,
                email,
                phone,
            ],
            merchants,
            sampled: engine.samples(id),
        });
    }
    engine.assess(&events, &subjects)
}

/// What is stored of an assessment: in an allowed order's row, or in a `DecisionRow`.
fn order_risk(a: Assessment, engine: &RiskEngine) -> OrderRisk {
    OrderRisk {
        three_ds: a.decision.three_ds,
        score: a.score,
        model: a.score.and(engine.model_version()),
        decided_by: a.decision.decided_by,
        fired: a.decision.fired,
        reasons: a.reasons,
    }
}

/// The stored form of one order's assessment held, blocked or allowed and sampled (a
/// `risk_decisions` row).
fn decision_row(
    id: i64,
    buyer: &Arc<str>,
    p: &Prepared,
    now_ms: u64,
    mut a: Assessment,
    engine: &RiskEngine,
) -> DecisionRow {
    let features = a.features.take();
    DecisionRow {
        id,
        buyer: Arc::clone(buyer),
        merchant: p
            .lines
            .first()
            .map_or_else(|| Arc::from(""), |l| Arc::clone(&l.3)),
        at_ms: now_ms as i64,
        outcome: a.decision.outcome,
        risk: order_risk(a, engine),
        features,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::parse::{check_order, parse_order};

    const NOW: u64 = 1_796_100_000_000;

    /// A book selling SKU 0 (250 CNY, 5 units in warehouse 0) to region `north`.
    fn shop() -> (Inventory, IdGenerator, OrderBook) {
        let inventory = Inventory::new(1).unwrap();
        inventory.set_region(0, &[0]).unwrap();
        let sku = inventory.add_sku(&[(0, 5)], 0).unwrap();
        let mut book = OrderBook::new(60_000);
        book.set_sku(
            sku,
            SkuEntry {
                price: 250,
                currency: *b"CNY",
                merchant: Arc::from("merchant:m"),
                release_ms: None,
            },
        );
        book.set_region("north", 0);
        (
            inventory,
            IdGenerator::with_system_clock(0, 0, 100).unwrap(),
            book,
        )
    }

    /// Buyer alice (number 7) at `now_ms`, from a client of which nothing is known.
    fn alice(now_ms: u64) -> Placement<'static> {
        Placement {
            buyer: "alice",
            buyer_number: 7,
            now_ms,
            client: Client::default(),
        }
    }

    /// A batch body placed by alice at `NOW` into fresh rows: its outcomes and the rows.
    fn place_batch(
        inventory: &Inventory,
        ids: &IdGenerator,
        book: &mut OrderBook,
        body: &str,
    ) -> (Vec<Outcome>, OrderRows) {
        let requests = crate::orders::parse::parse_batch(body.as_bytes()).unwrap();
        let mut rows = OrderRows::default();
        let out = book
            .place(inventory, ids, &alice(NOW), &requests, &mut rows)
            .unwrap();
        (out, rows)
    }

    /// An order given as values (`check_order`, the embedding API) is priced, reserved, staged
    /// and held exactly as the same order given as a body.
    #[test]
    fn an_order_of_values_is_placed_as_its_body() {
        let (inventory, ids, mut book) = shop();
        let who = alice(NOW);
        let body = br#"{"lines":[{"sku":0,"quantity":2}],"address":{"name":"A","line1":"1 Road","city":"X","region":"north"}}"#;
        let from_body = parse_order(body).unwrap();
        let address = [Some("A"), Some("1 Road"), Some("X"), Some("north")];
        let mut fields = [None; 8];
        fields[..4].copy_from_slice(&address);
        let from_values = check_order(&[(0, 2)], fields, [None; 3]).unwrap();
        let mut rows = OrderRows::default();
        let placed: Vec<Arc<NewOrder>> = [from_body, from_values]
            .iter()
            .map(|req| {
                let out = book
                    .place(&inventory, &ids, &who, std::slice::from_ref(req), &mut rows)
                    .unwrap();
                match &out[..] {
                    [Outcome::Created(o)] => Arc::clone(o),
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        let [a, b] = &placed[..] else { unreachable!() };
        assert_ne!(a.id, b.id);
        assert_eq!(
            NewOrder {
                id: a.id,
                reservation: a.reservation,
                ..NewOrder::clone(b)
            },
            **a
        );
        assert_eq!((b.total, b.lines[0].warehouse), (500, 0));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.reserved_deltas(), vec![(0, 0, 4)]);
        assert_eq!(
            book.pending(b.id).map(|p| p.reservation),
            Some(b.reservation)
        );

        // Refused as a body would be: out of stock, nothing staged or held.
        let more = check_order(&[(0, 2)], fields, [None; 3]).unwrap();
        let out = book
            .place(
                &inventory,
                &ids,
                &who,
                std::slice::from_ref(&more),
                &mut rows,
            )
            .unwrap();
        assert!(
            matches!(&out[..], [Outcome::Refused(r)] if r.code == "out_of_stock" && r.sku == Some(0)),
            "{out:?}"
        );
        assert_eq!((rows.len(), book.pending_count()), (2, 2));
    }

    /// A SKU with a release time is refused `not_on_sale` before it (nothing reserved, staged
    /// or held, and the ID skipped) and sold from it on.
    #[test]
    fn a_sku_is_sold_from_its_release_on() {
        let (inventory, ids, mut book) = shop();
        let release = NOW as i64 + 1_000;
        book.set_sku(
            0,
            SkuEntry {
                price: 250,
                currency: *b"CNY",
                merchant: Arc::from("merchant:m"),
                release_ms: Some(release),
            },
        );
        let body = br#"{"lines":[{"sku":0,"quantity":1}],"address":{"name":"A","line1":"1 Road","city":"X","region":"north"}}"#;
        let req = parse_order(body).unwrap();
        let mut rows = OrderRows::default();
        let mut place_at = |now_ms: u64| {
            let who = alice(now_ms);
            book.place(
                &inventory,
                &ids,
                &who,
                std::slice::from_ref(&req),
                &mut rows,
            )
            .unwrap()
        };
        let early = place_at(NOW + 999);
        assert!(
            matches!(&early[..], [Outcome::Refused(r)]
                if (r.status, r.code, r.sku) == (409, "not_on_sale", Some(0))
                    && r.message.contains(&release.to_string())),
            "{early:?}"
        );
        assert!(matches!(&place_at(NOW + 1_000)[..], [Outcome::Created(_)]));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows.reserved_deltas(), vec![(0, 0, 1)]);
        assert_eq!(book.pending_count(), 1);
    }

    /// Risk control decides every order of a batch: a blocked order's decision is staged and
    /// nothing reserved; an order the inventory then refuses has no decision; the others have
    /// theirs, with the order held for review where the policy says so.
    #[test]
    fn a_batch_stages_the_decisions_of_the_orders_placed_and_blocked() {
        use crate::risk::{Action, Limits, Op, Outcome as Risk, Policy, Program, Rule};

        let (inventory, ids, mut book) = shop();
        let engine = RiskEngine::new(None, Limits::default(), false, Risk::Allow);
        let mut deny = <[Vec<String>; 7]>::default();
        deny[1] = vec!["bad-device".into()];
        // Held for review: quantity (feature 30) of 2.
        let review = Rule {
            id: Arc::from("two"),
            action: Action::Review,
            merchant: None,
            condition: Program::new(vec![Op::Feature(30), Op::Number(2.0), Op::Eq]).unwrap(),
        };
        engine.set_policy(Policy::new(75, 65, vec![review], Default::default(), deny));
        book.risk = Some(Arc::new(engine));
        let order = |quantity: u32, device: &str| {
            format!(
                r#"{{"lines":[{{"sku":0,"quantity":{quantity}}}],"address":{{"name":"A","line1":"1 Road","city":"X","region":"north"}},"context":{{"device_id":"{device}"}}}}"#
            )
        };
        // 5 units: 1 placed, 9 blocked (not reserved), 2 held for review, 3 out of stock.
        let body = format!(
            r#"{{"orders":[{},{},{},{}]}}"#,
            order(1, "d1"),
            order(9, "bad-device"),
            order(2, "d2"),
            order(3, "d3")
        );
        let (out, rows) = place_batch(&inventory, &ids, &mut book, &body);
        let codes: Vec<&str> = out
            .iter()
            .map(|o| match o {
                Outcome::Created(o) => o.status,
                Outcome::Refused(r) => r.code,
            })
            .collect();
        assert_eq!(
            codes,
            [PENDING_PAYMENT, "risk_blocked", IN_REVIEW, "out_of_stock"]
        );
        let Outcome::Refused(blocked) = &out[1] else {
            unreachable!()
        };
        let staged: Vec<(i64, Risk, String)> = rows
            .decisions
            .iter()
            .map(|d| (d.id, d.outcome, d.risk.decided_by_text().into_owned()))
            .collect();
        let placed: Vec<i64> = rows.orders.iter().map(|o| o.id).collect();
        assert_eq!(
            staged,
            [
                (
                    blocked.decision.unwrap(),
                    Risk::Block,
                    "list:block:device".into()
                ),
                (placed[1], Risk::Review, "two".into()),
            ]
        );
        // The allowed order's decision is in its own row; the one held for review has its
        // decision's row instead.
        assert_eq!(
            rows.orders[0].risk_packed().as_deref(),
            // [nil, nil, 0 (default), false, [], []]
            Some(&[0x96, 0xc0, 0xc0, 0x00, 0xc2, 0x90, 0x90][..])
        );
        assert_eq!(rows.orders[1].risk, None);
        assert_eq!(rows.blocked(), 1);
        assert_eq!(rows.decisions[1].risk.fired_json(), r#"["two"]"#);
        assert_eq!(rows.decisions[0].risk.reasons_json(), "[]");
        // Only the decision held for review keeps its features (a label once reviewed).
        let kept: Vec<bool> = rows
            .decisions
            .iter()
            .map(|d| d.features.is_some())
            .collect();
        assert_eq!(kept, [false, true]);
        let features = rows.decisions[1].features_json().unwrap();
        assert!(features.contains(r#""quantity":2"#), "{features}");
        // The blocked order reserved nothing: 1 + 2 of the 5 units.
        assert_eq!(rows.reserved_deltas(), vec![(0, 0, 3)]);
    }

    /// With every allowed order sampled, an allowed order's decision is a decision row with
    /// its features (a fraud report labels it), and its own row has no decision; an order the
    /// inventory refuses leaves no decision behind.
    #[test]
    fn a_sampled_allowed_order_keeps_its_features_in_a_decision_row() {
        use crate::risk::{Limits, Outcome as Risk};

        let (inventory, ids, mut book) = shop();
        let engine = RiskEngine::new(None, Limits::default(), false, Risk::Allow);
        engine.set_sample(crate::risk::SAMPLE_SCALE);
        book.risk = Some(Arc::new(engine));
        let body = r#"{"orders":[{"lines":[{"sku":0,"quantity":2}],"address":{"name":"A","line1":"1 Road","city":"X","region":"north"}},{"lines":[{"sku":0,"quantity":9}],"address":{"name":"A","line1":"1 Road","city":"X","region":"north"}}]}"#;
        let (out, rows) = place_batch(&inventory, &ids, &mut book, body);
        assert!(matches!(
            &out[..],
            [Outcome::Created(_), Outcome::Refused(_)]
        ));
        assert_eq!(rows.orders.len(), 1);
        assert_eq!(rows.orders[0].risk, None);
        assert_eq!(rows.decisions.len(), 1);
        let d = &rows.decisions[0];
        assert_eq!((d.id, d.outcome), (rows.orders[0].id, Risk::Allow));
        let features = d.features_json().unwrap();
        assert!(features.contains(r#""quantity":2"#), "{features}");
    }
}
