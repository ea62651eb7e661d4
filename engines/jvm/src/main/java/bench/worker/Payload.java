package bench.worker;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;

/**
 * The benchmark payload (docs/worker-protocol.md, "The payload"): magic "BLG1", version 1, run id
 * length, producer id length, u64 sequence, u64 send time (wall ns), run id, producer id, zeros.
 */
final class Payload {
    static final int FIXED = 23;
    private static final byte[] MAGIC = {'B', 'L', 'G', '1'};

    private final byte[] header;
    private final int size;

    /** A template for one producer's payloads of exactly size bytes. */
    Payload(String runId, String producerId, int size) {
        byte[] run = runId.getBytes(StandardCharsets.UTF_8);
        byte[] producer = producerId.getBytes(StandardCharsets.UTF_8);
        if (run.length > 255 || producer.length > 255) {
            throw new IllegalArgumentException("run id and producer id must each fit in 255 UTF-8 bytes");
        }
        header = new byte[FIXED + run.length + producer.length];
        System.arraycopy(MAGIC, 0, header, 0, 4);
        header[4] = 1;
        header[5] = (byte) run.length;
        header[6] = (byte) producer.length;
        System.arraycopy(run, 0, header, FIXED, run.length);
        System.arraycopy(producer, 0, header, FIXED + run.length, producer.length);
        if (size < header.length) {
            throw new IllegalArgumentException("message_size " + size + " is below the " + header.length + "-byte header");
        }
        this.size = size;
    }

    static int headerLength(String runId, String producerId) {
        return FIXED + runId.getBytes(StandardCharsets.UTF_8).length + producerId.getBytes(StandardCharsets.UTF_8).length;
    }

    /** A new payload (clients keep it until sent, so never reused). */
    byte[] encode(long seq, long sendNs) {
        byte[] out = new byte[size];
        System.arraycopy(header, 0, out, 0, header.length);
        putLong(out, 7, seq);
        putLong(out, 15, sendNs);
        return out;
    }

    static void putLong(byte[] b, int at, long v) {
        for (int i = 7; i >= 0; i--) {
            b[at + i] = (byte) v;
            v >>>= 8;
        }
    }

    static long getLong(byte[] b, int at) {
        long v = 0;
        for (int i = 0; i < 8; i++) v = (v << 8) | (b[at + i] & 0xFF);
        return v;
    }

    /** True if data starts with a well-formed header (magic, version, lengths fit). */
    static boolean wellFormed(byte[] data) {
        if (data.length < FIXED) return false;
        for (int i = 0; i < 4; i++) if (data[i] != MAGIC[i]) return false;
        if (data[4] != 1) return false;
        return FIXED + (data[5] & 0xFF) + (data[6] & 0xFF) <= data.length;
    }

    static int runLength(byte[] data) { return data[5] & 0xFF; }

    static int producerLength(byte[] data) { return data[6] & 0xFF; }

    static long seq(byte[] data) { return getLong(data, 7); }

    static long sendNs(byte[] data) { return getLong(data, 15); }

    /** Strict UTF-8 decoding of data[from, from+len); null when not UTF-8. */
    static String utf8(byte[] data, int from, int len) {
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(data, from, len))
                    .toString();
        } catch (CharacterCodingException e) {
            return null;
        }
    }
}
