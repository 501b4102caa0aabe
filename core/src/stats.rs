//! [`Stats`]: what the room counts for a driver's metrics that its outputs do not show as such.

/// Running totals since the room was created; they only grow (wrapping is out of reach of a
/// `u64`). Joins, leaves and public messages are not here: each is an [`Output::Log`] record
/// already, which a driver can count as it drains them.
///
/// [`Output::Log`]: crate::Output::Log
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Private messages delivered: `/msg` (or a `msg` request) to a user who was online.
    pub private_messages: u64,
    /// Lines and messages dropped by flood control, whether or not the sender was told (it is
    /// told once until a line gets through again).
    pub flood_rejections: u64,
}
