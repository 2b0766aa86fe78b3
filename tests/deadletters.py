"""Reading what services dead-lettered, straight from the DEADLETTERS stream."""

from nats.js import JetStreamContext

from contracts.events import DeadLetter


async def dead_letters(js: JetStreamContext) -> list[DeadLetter]:
    """Every dead letter stored so far, oldest first."""
    info = await js.stream_info("DEADLETTERS")
    letters: list[DeadLetter] = []
    if info.state.messages == 0:
        return letters
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await js.get_msg("DEADLETTERS", seq)
        if raw.subject.startswith("deadletter."):
            letters.append(DeadLetter.model_validate_json(raw.data))
    return letters
