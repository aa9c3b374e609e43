//! Request rate limits per broker account, shared by every session of that account.
//!
//! An [`AccountLimiter`] lets at most `max` requests through in any window of length `per`, and lets
//! exactly that many through when there is demand: it keeps a sliding log of the instants at which it
//! let requests through, so request `n` may go at `max(now, admitted[n − max] + per + slack)`. The
//! slack ([`WINDOW_SLACK`], 1 ms) keeps the limit for brokers that count either edge of their window
//! (a closed window `[t, t + per]` with millisecond clocks); it costs 0.1 % of the throughput of a
//! one-second window.
//!
//! A request that arrives when the window is full is given its turn at once (the earliest instant the
//! log allows behind everyone already waiting, and at least `(per + slack) / max` after the turn before
//! it, so that a backlog drains evenly instead of `max` at a time at each window's edge), and sleeps with
//! tokio's `sleep_until` exactly until then: waiters are served in arrival order, and each free slot
//! wakes the one waiter it was planned for, never the whole queue. A request whose turn lies past its
//! deadline is refused at once, without taking a place. At most [`DEFAULT_QUEUE_LIMIT`] requests wait
//! (see [`AccountLimiter::with_queue_limit`]); more are refused at once.
//!
//! Turns are plans; the limit rests on the log alone. A waiter is let through only if the log of what
//! really went through has room at the instant it wakes; if it has not (a waiter ahead of it was polled
//! late and went later than planned), it is given a new turn. A waiter that is dropped before its turn
//! leaves the queue; the waiters behind it keep their turns, so its slot goes unused (at worst one
//! slot per dropped waiter) and can never let the limit be exceeded. Time is read only from warden's
//! [`Clock`], so tokio's paused time drives the limiter in tests and simulations.
//!
//! The limiter spaces the calls it sends; a broker counts them as they arrive. A network that reorders
//! calls can make a window that was full when sent hold one call too many when received: against a
//! broker that punishes an excess, give the policy's `request_rate` headroom below the broker's limit.
//!
//! The login rate limit is not here: it lives in the core, as a sliding window over the persisted login
//! history, because it must hold across restarts (an in-memory log would be emptied by every crash).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::time::Duration;
//! use warden_actors::Clock;
//! use warden_actors::ratelimit::AccountLimiter;
//! use warden_engine::{Rate, UnixMs};
//!
//! let clock = Clock::starting_at(UnixMs::from_millis(0));
//! let limiter = AccountLimiter::new("acct", Rate::new(2, Duration::from_secs(1)), clock.clone());
//! let deadline = clock.monotonic_now() + Duration::from_secs(30);
//! assert!(limiter.acquire(deadline).await); // at 0 ms
//! assert!(limiter.acquire(deadline).await); // at 0 ms
//! assert!(limiter.acquire(deadline).await); // waits for its turn: 1,001 ms
//! assert_eq!(clock.now(), UnixMs::from_millis(1_001));
//! # }
//! ```

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use warden_engine::Rate;

use crate::clock::Clock;

/// Added to every window: a request goes at least `per + WINDOW_SLACK` after the one `max` places
/// before it, so that a broker counting a closed window `[t, t + per]` on a millisecond clock sees no
/// more than `max` either.
pub const WINDOW_SLACK: Duration = Duration::from_millis(1);

/// How many requests may wait for one account's limiter unless [`AccountLimiter::with_queue_limit`]
/// says otherwise. In practice the deadline bounds the queue first: requests whose turn would come after
/// their deadline are refused, so at most about `max × request_timeout / per` wait.
pub const DEFAULT_QUEUE_LIMIT: usize = 65_536;

/// The most admission instants the log preallocates; larger limits grow it on use.
const PREALLOCATE_MAX: usize = 4_096;

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The request's turn would come after its deadline.
    #[error("the request's turn would come in {wait:?}, after its deadline")]
    TooLate {
        /// How long the request would have had to wait.
        wait: Duration,
    },
    /// The queue is full.
    #[error("the queue is full ({limit} requests wait)")]
    QueueFull {
        /// The queue limit.
        limit: usize,
    },
}

/// The request limiter of one broker account. See the module documentation.
pub struct AccountLimiter {
    account: String,
    rate: Rate,
    clock: Clock,
    schedule: Mutex<Schedule>,
}

impl std::fmt::Debug for AccountLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountLimiter")
            .field("account", &self.account)
            .field("rate", &self.rate)
            .field("waiting", &self.waiting())
            .finish_non_exhaustive()
    }
}

impl AccountLimiter {
    /// A limiter that lets at most `rate.max` requests into any window of length `rate.per` (plus
    /// [`WINDOW_SLACK`]), and that many when they are asked for. A `max` of 0 counts as 1.
    pub fn new(account: impl Into<String>, rate: Rate, clock: Clock) -> AccountLimiter {
        let schedule = Schedule::new(rate.max, rate.per.0.saturating_add(WINDOW_SLACK), DEFAULT_QUEUE_LIMIT);
        AccountLimiter { account: account.into(), rate, clock, schedule: Mutex::new(schedule) }
    }

    /// Widens every window by `jitter` beyond [`WINDOW_SLACK`]: the broker counts requests when they
    /// arrive, and requests sent exactly `per / max` apart arrive closer together when the network's
    /// delay varies. With the window widened by the spread of the one-way delay, no window of the
    /// broker's sees more than `max` (at the cost of `jitter / per` of the throughput).
    #[must_use]
    pub fn with_network_jitter(self, jitter: Duration) -> AccountLimiter {
        let window = self.rate.per.0.saturating_add(WINDOW_SLACK).saturating_add(jitter);
        let queue_limit = self.schedule.lock().map_or(DEFAULT_QUEUE_LIMIT, |s| s.queue_limit);
        AccountLimiter { schedule: Mutex::new(Schedule::new(self.rate.max, window, queue_limit)), ..self }
    }

    /// Sets how many requests may wait at once (at least 1); more are refused at once.
    #[must_use]
    pub fn with_queue_limit(self, limit: usize) -> AccountLimiter {
        let mut schedule = self.schedule.into_inner().unwrap_or_else(|p| p.into_inner());
        schedule.queue_limit = limit.max(1);
        AccountLimiter { schedule: Mutex::new(schedule), ..self }
    }

    /// The account's name.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The limit it keeps.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// How many requests wait for their turn now.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Takes one request's place in the account's limit, waiting (on tokio's clock) for its turn if the
    /// window is full. Returns false, at once, if the turn would come after `deadline` or the queue is
    /// full. See [`AccountLimiter::admit`] for the reason.
    pub async fn acquire(&self, deadline: Instant) -> bool {
        self.admit(deadline).await.is_ok()
    }

    /// [`AccountLimiter::acquire`], saying why a request was refused.
    ///
    /// Cancel-safe: dropping the future before it completes gives up its place in the queue (and its
    /// slot goes unused); a request is counted against the limit only when this returns `Ok`.
    pub async fn admit(&self, deadline: Instant) -> Result<(), Refusal> {
        let now = self.clock.monotonic_now();
        let (mut ticket, mut turn) = match self.lock().arrive(now, deadline)? {
            Arrival::Admitted => return Ok(()),
            Arrival::Queued { ticket, turn } => (ticket, turn),
        };
        let mut place = Place { limiter: self, ticket: Some(ticket) };
        loop {
            if turn > self.clock.monotonic_now() {
                tokio::time::sleep_until(turn).await;
            }
            let now = self.clock.monotonic_now();
            let woken = self.lock().wake(ticket, now, deadline);
            match woken {
                Ok(Wake::Later(later)) => turn = later,
                Ok(Wake::Requeued { ticket: new, turn: later }) => {
                    (ticket, turn) = (new, later);
                    place.ticket = Some(new);
                }
                // Admitted or refused, the schedule has taken the ticket out of the queue.
                done => {
                    place.ticket = None;
                    return done.map(|_| ());
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Schedule> {
        // Nothing panics while holding the lock; a poisoned one still holds a consistent schedule.
        self.schedule.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A waiter's place in the queue: leaves it if the waiting future is dropped.
struct Place<'a> {
    limiter: &'a AccountLimiter,
    ticket: Option<Ticket>,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.limiter.lock().cancel(ticket);
        }
    }
}

/// A waiting request's number, increasing in arrival order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Ticket(u64);

/// What [`Schedule::arrive`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arrival {
    /// Let through now.
    Admitted,
    /// Wait until `turn`, then call [`Schedule::wake`] with the ticket.
    Queued { ticket: Ticket, turn: Instant },
}

/// What [`Schedule::wake`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    /// Let through now.
    Admitted,
    /// The log has no room yet: wait until this new turn.
    Later(Instant),
    /// The ticket was not in the queue: queued again as a newcomer, under a new ticket.
    Requeued { ticket: Ticket, turn: Instant },
}

#[derive(Clone, Copy, Debug)]
struct Waiter {
    ticket: Ticket,
    turn: Instant,
}

/// The limiter's state, with time as a parameter: the log of admissions and the queue of waiters.
#[derive(Debug)]
struct Schedule {
    /// At most this many admissions in any window.
    max: usize,
    /// The window, slack included.
    window: Duration,
    /// The spacing of queued turns: `window / max`.
    pace: Duration,
    /// At most this many waiters.
    queue_limit: usize,
    /// The instants of the last (at most) `max` admissions, oldest first.
    admitted: VecDeque<Instant>,
    /// The waiting requests in arrival order; their turns never decrease along the queue, except for
    /// a waiter given a later turn by [`Schedule::wake`].
    waiting: VecDeque<Waiter>,
    /// The latest turn given so far: a newcomer never goes before it (first come, first served).
    latest_turn: Option<Instant>,
    next_ticket: u64,
}

impl Schedule {
    fn new(max: u32, window: Duration, queue_limit: usize) -> Schedule {
        let pace = window / max.max(1);
        let max = usize::try_from(max.max(1)).unwrap_or(usize::MAX);
        Schedule {
            max,
            window,
            pace,
            queue_limit: queue_limit.max(1),
            admitted: VecDeque::with_capacity(max.min(PREALLOCATE_MAX)),
            waiting: VecDeque::new(),
            latest_turn: None,
            next_ticket: 0,
        }
    }

    /// The earliest instant at which the log has room for one more admission (`None`: now).
    fn log_frees_at(&self) -> Option<Instant> {
        let full = self.admitted.len().checked_sub(self.max)?;
        Some(self.admitted[full] + self.window)
    }

    /// A request arrives at `now`: let it through, queue it with its turn, or refuse it.
    fn arrive(&mut self, now: Instant, deadline: Instant) -> Result<Arrival, Refusal> {
        let turn = self.next_turn(now).ok_or(Refusal::TooLate { wait: Duration::MAX })?;
        if turn <= now && self.waiting.is_empty() {
            self.admit(now);
            return Ok(Arrival::Admitted);
        }
        // A queued request goes at least `pace` after the one before it: a backlog drains evenly rather
        // than `max` at a time at the window's edges.
        let turn = match self.last_given() {
            Some(last) => turn.max(last.checked_add(self.pace).ok_or(Refusal::TooLate { wait: Duration::MAX })?),
            None => turn,
        };
        if turn > deadline {
            return Err(Refusal::TooLate { wait: turn.saturating_duration_since(now) });
        }
        if self.waiting.len() >= self.queue_limit {
            return Err(Refusal::QueueFull { limit: self.queue_limit });
        }
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.waiting.push_back(Waiter { ticket, turn });
        self.latest_turn = Some(self.latest_turn.map_or(turn, |t| t.max(turn)));
        Ok(Arrival::Queued { ticket, turn })
    }

    /// The turn a request arriving at `now` gets, behind everyone admitted or waiting: the instant
    /// `window` after the `max`-th latest of them, and not before the latest turn given. `None` if that
    /// instant is too far to represent.
    fn next_turn(&self, now: Instant) -> Option<Instant> {
        let waiting = self.waiting.len();
        let kth_latest = match waiting.checked_sub(self.max) {
            Some(i) => Some(self.waiting[i].turn),
            None => self.admitted.len().checked_sub(self.max - waiting).map(|i| self.admitted[i]),
        };
        let mut turn = now;
        if let Some(kth) = kth_latest {
            turn = turn.max(kth.checked_add(self.window)?);
        }
        if let Some(latest) = self.latest_turn {
            turn = turn.max(latest);
        }
        Some(turn)
    }

    /// The latest instant given to anyone: admitted, or a turn in the queue.
    fn last_given(&self) -> Option<Instant> {
        match (self.admitted.back().copied(), self.latest_turn) {
            (Some(a), Some(t)) => Some(a.max(t)),
            (a, t) => a.or(t),
        }
    }

    /// The waiter `ticket` wakes at `now`: let it through if the log has room, else give it a later
    /// turn, or refuse it if that turn comes after its deadline. Admitted or refused, it leaves the queue.
    fn wake(&mut self, ticket: Ticket, now: Instant, deadline: Instant) -> Result<Wake, Refusal> {
        let Ok(index) = self.waiting.binary_search_by_key(&ticket, |w| w.ticket) else {
            // Not queued (never, or no more): a newcomer, rather than one let through unchecked.
            return match self.arrive(now, deadline)? {
                Arrival::Admitted => Ok(Wake::Admitted),
                Arrival::Queued { ticket, turn } => Ok(Wake::Requeued { ticket, turn }),
            };
        };
        match self.log_frees_at() {
            Some(frees_at) if frees_at > now => {
                if frees_at > deadline {
                    self.waiting.remove(index);
                    return Err(Refusal::TooLate { wait: frees_at.saturating_duration_since(now) });
                }
                self.waiting[index].turn = frees_at;
                self.latest_turn = Some(self.latest_turn.map_or(frees_at, |t| t.max(frees_at)));
                Ok(Wake::Later(frees_at))
            }
            _ => {
                self.waiting.remove(index);
                self.admit(now);
                Ok(Wake::Admitted)
            }
        }
    }

    /// The waiter `ticket` gives up (its future was dropped). Its slot goes unused.
    fn cancel(&mut self, ticket: Ticket) {
        if let Ok(index) = self.waiting.binary_search_by_key(&ticket, |w| w.ticket) {
            self.waiting.remove(index);
        }
    }

    /// Records an admission at `now`; the caller has checked that the log has room.
    fn admit(&mut self, now: Instant) {
        debug_assert!(self.log_frees_at().is_none_or(|t| t <= now), "admitted into a full window");
        debug_assert!(self.admitted.back().is_none_or(|t| *t <= now), "the log runs forward");
        self.admitted.push_back(now);
        while self.admitted.len() > self.max {
            self.admitted.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::task::JoinSet;
    use warden_engine::UnixMs;
    use warden_engine::rng::SplitMix64;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const TIMEOUT: Duration = Duration::from_secs(30);

    fn clock() -> Clock {
        Clock::starting_at(UnixMs::from_millis(0))
    }

    /// What became of one request.
    #[derive(Clone, Copy, Debug)]
    struct Outcome {
        arrived: Instant,
        result: Result<Instant, Refusal>,
    }

    impl Outcome {
        fn admitted_at(&self) -> Option<Instant> {
            self.result.ok()
        }
        fn wait(&self) -> Duration {
            match self.result {
                Ok(at) => at - self.arrived,
                Err(_) => Duration::ZERO,
            }
        }
    }

    /// One request at each offset of `arrivals` (sorted), each in its own task with a deadline
    /// `TIMEOUT` after its arrival; the outcomes in arrival order.
    async fn drive(limiter: &Arc<AccountLimiter>, clock: Clock, arrivals: &[Duration]) -> Vec<Outcome> {
        let start = clock.monotonic_now();
        let mut tasks = JoinSet::new();
        for (i, offset) in arrivals.iter().enumerate() {
            tokio::time::sleep_until(start + *offset).await;
            let limiter = limiter.clone();
            let clock = clock.clone();
            tasks.spawn(async move {
                let arrived = clock.monotonic_now();
                let result = limiter.admit(arrived + TIMEOUT).await.map(|()| clock.monotonic_now());
                (i, Outcome { arrived, result })
            });
        }
        let mut outcomes = vec![None; arrivals.len()];
        while let Some(Ok((i, outcome))) = tasks.join_next().await {
            outcomes[i] = Some(outcome);
        }
        outcomes.into_iter().map(|o| o.expect("every request finished")).collect()
    }

    /// The most admissions in any closed window `[t, t + per]` starting at an admission.
    fn busiest_window(outcomes: &[Outcome], per: Duration) -> usize {
        let mut at: Vec<Instant> = outcomes.iter().filter_map(Outcome::admitted_at).collect();
        at.sort();
        (0..at.len()).map(|i| at[i..].iter().take_while(|u| **u <= at[i] + per).count()).max().unwrap_or(0)
    }

    fn p99_wait(outcomes: &[Outcome]) -> Duration {
        let mut waits: Vec<Duration> = outcomes.iter().map(Outcome::wait).collect();
        waits.sort();
        waits[(waits.len() * 99 / 100).min(waits.len() - 1)]
    }

    fn served_in_arrival_order(outcomes: &[Outcome]) -> bool {
        let admitted: Vec<Instant> = outcomes.iter().filter_map(Outcome::admitted_at).collect();
        admitted.windows(2).all(|w| w[0] <= w[1])
    }

    fn poisson(rate_per_s: f64, span: Duration, seed: u64) -> Vec<Duration> {
        let mut rng = SplitMix64::new(seed);
        let mut at = Duration::ZERO;
        let mut arrivals = Vec::new();
        loop {
            at += Duration::from_secs_f64(-(1.0 - rng.next_unit()).ln() / rate_per_s);
            if at >= span {
                return arrivals;
            }
            arrivals.push(at);
        }
    }

    /// `d` rounded up to a whole millisecond: when tokio's timer wakes a sleep until `start + d`.
    fn ceil_ms(d: Duration) -> Duration {
        Duration::from_millis(u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap())
    }

    fn limiter(max: u32, per: Duration, clock: Clock) -> Arc<AccountLimiter> {
        Arc::new(AccountLimiter::new("acct", Rate::new(max, per), clock))
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_max_at_once_then_the_rest_evenly_one_window_later() {
        let clock = clock();
        let limiter = limiter(10, SECOND, clock.clone());
        let start = clock.monotonic_now();
        let outcomes = drive(&limiter, clock.clone(), &[Duration::ZERO; 25]).await;
        let offsets: Vec<Duration> = outcomes.iter().map(|o| o.admitted_at().unwrap() - start).collect();
        // Ten at once; then, from one window (plus slack) later, one every 100.1 ms (tokio's timer fires
        // on the next whole millisecond).
        let window = SECOND + WINDOW_SLACK;
        let expected: Vec<Duration> = (0..25u32)
            .map(|i| if i < 10 { Duration::ZERO } else { ceil_ms(window + window / 10 * (i - 10)) })
            .collect();
        assert_eq!(offsets, expected);
        assert_eq!(busiest_window(&outcomes, SECOND), 10);
        assert_eq!(limiter.waiting(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn steady_load_below_the_limit_loses_nothing_and_waits_little() {
        for (load, p99_max) in [(0.6, Duration::from_millis(750)), (0.8, Duration::from_secs(2))] {
            let clock = clock();
            let limiter = limiter(10, SECOND, clock.clone());
            let outcomes = drive(&limiter, clock.clone(), &poisson(10.0 * load, Duration::from_secs(3600), 7)).await;
            assert!(outcomes.iter().all(|o| o.result.is_ok()), "load {load}: a request was refused");
            assert_eq!(busiest_window(&outcomes, SECOND), 10, "load {load}: bursts fill windows, never more");
            assert!(served_in_arrival_order(&outcomes), "load {load}");
            let p99 = p99_wait(&outcomes);
            assert!(p99 <= p99_max, "load {load}: p99 wait {p99:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn at_and_over_the_limit_throughput_reaches_it_and_never_passes_it() {
        let span = Duration::from_secs(3600);
        // 100 % as evenly spaced requests, as Poisson arrivals, and 150 % (Poisson): overload.
        let even: Vec<Duration> = (0..36_000u32).map(|i| Duration::from_millis(100) * i).collect();
        for (name, arrivals) in [
            ("even 100 %", even),
            ("Poisson 100 %", poisson(10.0, span, 11)),
            ("Poisson 150 %", poisson(15.0, span, 12)),
        ] {
            let clock = clock();
            let limiter = limiter(10, SECOND, clock.clone());
            let start = clock.monotonic_now();
            let outcomes = drive(&limiter, clock.clone(), &arrivals).await;
            assert_eq!(busiest_window(&outcomes, SECOND), 10, "{name}");
            assert!(served_in_arrival_order(&outcomes), "{name}");
            // Admissions during the offered hour, against the limit's 10/s.
            let admitted = outcomes.iter().filter_map(Outcome::admitted_at).filter(|t| *t < start + span).count();
            let share = admitted as f64 / 36_000.0;
            let offered = arrivals.len() as f64 / 36_000.0;
            assert!(share >= 0.99_f64.min(offered * 0.99), "{name}: {admitted} admitted in an hour");
            // A refusal is immediate, and nobody waits past the deadline.
            assert!(outcomes.iter().all(|o| o.wait() <= TIMEOUT), "{name}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn overload_is_refused_at_once_without_taking_a_slot() {
        let clock = clock();
        // 1 per second: the 31st waiter of a burst would wait 30.03 s, past its 30 s deadline.
        let limiter = limiter(1, SECOND, clock.clone());
        let outcomes = drive(&limiter, clock.clone(), &[Duration::ZERO; 40]).await;
        let admitted = outcomes.iter().filter(|o| o.result.is_ok()).count();
        assert_eq!(admitted, 30, "one now and 29 within the deadline");
        for o in &outcomes[30..] {
            assert!(matches!(o.result, Err(Refusal::TooLate { .. })), "{o:?}");
        }
        // The refused took no slot: the next request goes right after the last admitted one.
        let start = clock.monotonic_now();
        assert!(limiter.acquire(start + TIMEOUT).await);
        let last = outcomes[29].admitted_at().unwrap();
        assert_eq!(clock.monotonic_now(), last + SECOND + WINDOW_SLACK);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_refuses_at_once() {
        let clock = clock();
        let limiter = Arc::new(AccountLimiter::new("acct", Rate::new(1, SECOND), clock.clone()).with_queue_limit(3));
        let outcomes = drive(&limiter, clock.clone(), &[Duration::ZERO; 6]).await;
        let refused: Vec<_> = outcomes.iter().filter_map(|o| o.result.err()).collect();
        assert_eq!(refused, vec![Refusal::QueueFull { limit: 3 }; 2]);
        assert_eq!(busiest_window(&outcomes, SECOND), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_waiter_leaves_the_queue_and_the_limit_holds() {
        let clock = clock();
        let limiter = limiter(2, SECOND, clock.clone());
        let start = clock.monotonic_now();
        let deadline = start + TIMEOUT;
        assert!(limiter.acquire(deadline).await && limiter.acquire(deadline).await);
        // Four waiters, paced half a window apart: turns at 1.001, 1.5015, 2.002 and 2.5025 s. The first
        // one gives up at 0.5 s.
        let mut waiters: Vec<_> = (0..4)
            .map(|_| {
                let (limiter, clock) = (limiter.clone(), clock.clone());
                tokio::spawn(async move {
                    limiter.acquire(deadline).await;
                    clock.monotonic_now()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(limiter.waiting(), 4);
        let first = waiters.remove(0);
        first.abort();
        assert!(first.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(limiter.waiting(), 3, "the dropped waiter left the queue");
        // A newcomer still goes behind everyone queued.
        let newcomer = {
            let (limiter, clock) = (limiter.clone(), clock.clone());
            tokio::spawn(async move {
                limiter.acquire(deadline).await;
                clock.monotonic_now()
            })
        };
        let mut at = Vec::new();
        for waiter in waiters {
            at.push(waiter.await.unwrap() - start);
        }
        at.push(newcomer.await.unwrap() - start);
        let window = SECOND + WINDOW_SLACK;
        let expected: Vec<Duration> = [window * 3 / 2, window * 2, window * 5 / 2, window * 3].map(ceil_ms).into();
        assert_eq!(at, expected, "the slot at 1.001 s went unused");
    }

    /// The schedule alone, driven with random arrivals, late wake-ups and cancellations: whatever order
    /// waiters are woken in and however late, the log never holds more than `max` in a window.
    #[tokio::test(start_paused = true)]
    async fn late_and_out_of_order_wake_ups_never_exceed_the_limit() {
        let base = clock().monotonic_now();
        let window = SECOND + WINDOW_SLACK;
        for seed in 0..20 {
            let mut rng = SplitMix64::new(seed);
            let mut schedule = Schedule::new(5, window, 1_000);
            let mut queued: Vec<(Ticket, Instant)> = Vec::new();
            let mut admitted: Vec<Instant> = Vec::new();
            let mut now = base;
            for _ in 0..5_000 {
                now += Duration::from_millis(rng.below(150));
                let deadline = now + TIMEOUT;
                match rng.below(4) {
                    0 | 1 => match schedule.arrive(now, deadline) {
                        Ok(Arrival::Admitted) => admitted.push(now),
                        Ok(Arrival::Queued { ticket, turn }) => queued.push((ticket, turn)),
                        Err(_) => {}
                    },
                    2 if !queued.is_empty() => {
                        // Any due waiter, not necessarily the first, possibly long after its turn.
                        let pick = usize::try_from(rng.below(queued.len() as u64)).unwrap();
                        let (ticket, turn) = queued[pick];
                        if turn <= now {
                            match schedule.wake(ticket, now, deadline) {
                                Ok(Wake::Admitted) => {
                                    admitted.push(now);
                                    queued.remove(pick);
                                }
                                Ok(Wake::Later(later)) => queued[pick].1 = later,
                                Ok(Wake::Requeued { .. }) => panic!("seed {seed}: a queued ticket was lost"),
                                Err(_) => {
                                    queued.remove(pick);
                                }
                            }
                        }
                    }
                    3 if !queued.is_empty() && rng.below(10) == 0 => {
                        let pick = usize::try_from(rng.below(queued.len() as u64)).unwrap();
                        schedule.cancel(queued.remove(pick).0);
                    }
                    _ => {}
                }
                assert_eq!(schedule.waiting.len(), queued.len());
            }
            assert!(admitted.len() > 500, "seed {seed}: the schedule kept going ({} admitted)", admitted.len());
            let mut busiest = 0;
            for (i, t) in admitted.iter().enumerate() {
                let in_window = admitted[i..].iter().take_while(|u| **u < *t + window).count();
                assert!(in_window <= 5, "seed {seed}: {in_window} admissions within {window:?} of {t:?}");
                busiest = busiest.max(in_window);
            }
            assert_eq!(busiest, 5, "seed {seed}: the load fills windows");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_limit_counts_as_one() {
        let clock = clock();
        let limiter = limiter(0, SECOND, clock.clone());
        let outcomes = drive(&limiter, clock.clone(), &[Duration::ZERO; 3]).await;
        assert!(outcomes.iter().all(|o| o.result.is_ok()));
        assert_eq!(busiest_window(&outcomes, SECOND), 1);
    }
}
