/* signery._fastzip: an optional accelerator for signery.archive.
 *
 * It does three things, all for the common case only:
 *
 *   scan(buffer, limits, entry_type)  parses and validates a ZIP archive whose every entry is plain (ASCII name,
 *                                     no ZIP64, entries laid out in central-directory order) and returns what
 *                                     signery.archive._parse would return for it.
 *   digest(buffer, entries, algorithm, threads[, hex[, max_entry[, progress[, step]]]])
 *                                     inflates each entry, checks its CRC-32 and size, and hashes it (SHA-256 or
 *                                     SHA-512 through OpenSSL), on several threads without the GIL; entries
 *                                     of max_entry bytes or more are left out (None), for the caller to stream,
 *                                     unless a progress callable is given: they are then hashed afterwards on
 *                                     the calling thread, which takes the GIL back every `step` compressed bytes
 *                                     to pass them to progress(n). With progress, every entry's compressed size
 *                                     is reported exactly once when all check out (the others' in one call).
 *   subjects_json(pairs, algorithm)   writes the canonical JSON of a statement's subjects, as
 *                                     signery.formats.native._subjects_json does, for plain ASCII names.
 *
 * None of them ever refuses anything itself. Whenever the input is unusual or wrong in any way, scan() returns None
 * and digest() returns the index of the first entry it could not confirm; signery.archive then runs its pure
 * Python reader, which is the reference and the only place where refusals (with their reasons) are made. So
 * this module can only make the common case fast: it cannot accept what the reference would refuse, and the
 * test suite checks that differentially (tests/unit/test_fastzip.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>
#ifdef HAVE_LIBDEFLATE
#include <libdeflate.h>
#endif

#define U16MAX 0xFFFFu
#define U32MAX 0xFFFFFFFFu
#define MAX_NAME 1024
#define MAX_EMPTY_DEFLATE 16
#define FLAG_ENCRYPTED 0x1u
#define FLAG_DATA_DESCRIPTOR 0x8u
#define FLAG_STRONG 0x40u
#define FLAG_MASKED 0x2000u
#define S_TYPE 0170000u
#define S_LNK 0120000u
#define S_REG 0100000u
#define S_DIR 0040000u
#define N_FIELDS 13
#define DROP_MIN (4u << 20)
#define OUT_CHUNK (256u << 10)
#define STORED_PIECE (256u << 10) /* CRC, then digest, over each piece while it is in cache */
#define DROP_STEP (8u << 20)      /* mapped pages are released behind a large span every so often */

static inline uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

/* Whether a path component is a Windows device name (CON, nul.txt, COM1...): its stem, up to the first dot and
   without trailing spaces, compared case-insensitively. The superscript-digit forms are not ASCII: never here. */
static int device_name(const unsigned char *c, Py_ssize_t len) {
    Py_ssize_t stem = 0;
    while (stem < len && c[stem] != '.') stem++;
    while (stem > 0 && c[stem - 1] == ' ') stem--;
    char u[8];
    if (stem < 3 || stem > 7) return 0;
    for (Py_ssize_t i = 0; i < stem; i++) u[i] = (char)((c[i] >= 'a' && c[i] <= 'z') ? c[i] - 32 : c[i]);
    u[stem] = 0;
    static const char *const fixed[] = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        if (strcmp(u, fixed[i]) == 0) return 1;
    return stem == 4 && (memcmp(u, "COM", 3) == 0 || memcmp(u, "LPT", 3) == 0) && u[3] >= '0' && u[3] <= '9';
}

/* An ASCII name that signery.archive.check_entry_name accepts without question; anything else falls back. */
static int plain_name(const unsigned char *n, Py_ssize_t len) {
    if (len < 1 || len > MAX_NAME) return 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        unsigned char c = n[i];
        if (c < 0x20 || c > 0x7e || c == '\\' || strchr("<>:\"|?*", c) != NULL) return 0;
    }
    if (n[0] == '/') return 0;
    Py_ssize_t end = len;
    while (end > 0 && n[end - 1] == '/') end--;
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i <= end; i++) {
        if (i == end || n[i] == '/') {
            Py_ssize_t part = i - start;
            if (part == 0) return 0;
            if (part == 1 && n[start] == '.') return 0;
            if (part == 2 && n[start] == '.' && n[start + 1] == '.') return 0;
            if (n[i - 1] == '.' || n[i - 1] == ' ') return 0; /* Windows drops a trailing dot or space */
            if (device_name(n + start, part)) return 0;
            start = i + 1;
        }
    }
    return 1;
}

/* Whether an extra-field block tiles exactly into distinct fields that carry nothing but times and owner ids
   (NTFS 0x000a, UT 0x5455, Info-ZIP 0x5855/0x7855/0x7875, JAR 0xcafe). ZIP64, Unicode Path and anything else
   go to the reference, which judges them. */
static int plain_extra(const unsigned char *x, Py_ssize_t len) {
    static const uint16_t allowed[] = {0x000a, 0x5455, 0x5855, 0x7855, 0x7875, 0xcafe};
    unsigned seen = 0;
    Py_ssize_t i = 0;
    while (i < len) {
        if (i + 4 > len) return 0;
        uint16_t tag = rd16(x + i), ln = rd16(x + i + 2);
        if (i + 4 + (Py_ssize_t)ln > len) return 0;
        size_t k = 0;
        while (k < sizeof allowed / sizeof *allowed && allowed[k] != tag) k++;
        if (k == sizeof allowed / sizeof *allowed || (seen & (1u << k))) return 0;
        seen |= 1u << k;
        i += 4 + (Py_ssize_t)ln;
    }
    return 1;
}

/* A version needed to extract every reader supports (at most 4.5), and a DOS date and time that are zero or
   possible, as the reference's _check_header_fields requires. */
static int plain_header(uint16_t need, uint16_t mtime, uint16_t mdate) {
    if ((need & 0xFFu) > 45) return 0;
    if (mtime == 0 && mdate == 0) return 1;
    unsigned day = mdate & 0x1Fu, month = (mdate >> 5) & 0xFu;
    unsigned sec = (mtime & 0x1Fu) * 2, min = (mtime >> 5) & 0x3Fu, hour = mtime >> 11;
    return day >= 1 && day <= 31 && month >= 1 && month <= 12 && sec < 60 && min < 60 && hour < 24;
}

/* Permission bits the reference accepts: no setuid/setgid/sticky, not world-writable, files readable by
   their owner. */
static int plain_mode(uint32_t mode, int is_dir) {
    return (mode & 07000u) == 0 && (mode & 0002u) == 0 && (is_dir || (mode & 0400u));
}

/* A set of folded names (open addressing over an arena), to find duplicates and files that are also dirs. */
typedef struct {
    uint64_t hash;
    uint32_t off, len;
    int used, is_file;
} Slot;

typedef struct {
    Slot *slots;
    size_t mask;
    char *arena;
    size_t used, cap;
} NameSet;

static uint64_t fnv1a(const char *p, size_t len) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static int ns_init(NameSet *ns, size_t entries) {
    size_t size = 16;
    while (size < entries * 2) size <<= 1;
    ns->slots = calloc(size, sizeof(Slot));
    ns->mask = size - 1;
    ns->cap = 1 << 16;
    ns->used = 0;
    ns->arena = malloc(ns->cap);
    return ns->slots && ns->arena;
}

static void ns_free(NameSet *ns) {
    free(ns->slots);
    free(ns->arena);
}

static Slot *ns_find(const NameSet *ns, const char *p, size_t len, uint64_t h) {
    for (size_t i = h & ns->mask;; i = (i + 1) & ns->mask) {
        Slot *slot = &ns->slots[i];
        if (!slot->used) return slot;
        if (slot->hash == h && slot->len == len && memcmp(ns->arena + slot->off, p, len) == 0) return slot;
    }
}

/* 1 added, 0 already there, -1 out of memory. The table never fills: it has twice as many slots as entries. */
static int ns_add(NameSet *ns, const char *p, size_t len, int is_file) {
    uint64_t h = fnv1a(p, len);
    Slot *slot = ns_find(ns, p, len, h);
    if (slot->used) return 0;
    if (ns->used + len > ns->cap) {
        size_t cap = ns->cap;
        while (ns->used + len > cap) cap <<= 1;
        char *grown = realloc(ns->arena, cap);
        if (!grown) return -1;
        ns->arena = grown;
        ns->cap = cap;
    }
    memcpy(ns->arena + ns->used, p, len);
    *slot = (Slot){h, (uint32_t)ns->used, (uint32_t)len, 1, is_file};
    ns->used += len;
    return 1;
}

/* Whether any name lies under another name that is a file ("a" a file, "a/b" an entry). */
static int ns_file_as_dir(const NameSet *ns) {
    for (size_t i = 0; i <= ns->mask; i++) {
        const Slot *slot = &ns->slots[i];
        if (!slot->used) continue;
        const char *name = ns->arena + slot->off;
        for (uint32_t k = 1; k < slot->len; k++) {
            if (name[k] != '/') continue;
            const Slot *prefix = ns_find(ns, name, k, fnv1a(name, k));
            if (prefix->used && prefix->is_file) return 1;
        }
    }
    return 0;
}

static PyObject *scan(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view;
    unsigned long long max_entries, max_total, max_entry, max_ratio, ratio_floor;
    PyObject *entry_type;
    if (!PyArg_ParseTuple(args, "y*(KKKKK)O", &view, &max_entries, &max_total, &max_entry, &max_ratio, &ratio_floor,
                          &entry_type))
        return NULL;
    if (!PyType_Check(entry_type) || !PyType_IsSubtype((PyTypeObject *)entry_type, &PyTuple_Type)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "entry_type must be a tuple subclass");
        return NULL;
    }
    /* A subclass with a __dict__ could hold anything; a named tuple (__slots__ = ()) holds only its fields. */
    const int untrack = ((PyTypeObject *)entry_type)->tp_dictoffset == 0 && PyType_IS_GC((PyTypeObject *)entry_type);
    const unsigned char *m = view.buf;
    const Py_ssize_t size = view.len;
    PyObject *entries = NULL, *result = NULL;
    NameSet names = {0};

    if (size < 22) goto slow;
    /* The last end-of-central-directory signature must be the one whose comment runs exactly to the end. */
    Py_ssize_t tail = size - 22 - 0xFFFF;
    if (tail < 0) tail = 0;
    Py_ssize_t pos = -1;
    for (Py_ssize_t i = size - 4; i >= tail; i--) {
        if (m[i] == 'P' && m[i + 1] == 'K' && m[i + 2] == 5 && m[i + 3] == 6) {
            pos = i;
            break;
        }
    }
    if (pos < 0 || pos + 22 > size) goto slow;
    const unsigned char *e = m + pos;
    uint16_t disk = rd16(e + 4), cd_disk = rd16(e + 6), n_disk = rd16(e + 8), n_total = rd16(e + 10);
    uint32_t cd_size = rd32(e + 12), cd_offset = rd32(e + 16);
    uint16_t comment_len = rd16(e + 20);
    if (pos + 22 + (Py_ssize_t)comment_len != size) goto slow;
    /* A comment holding "PK" might hold a record signature, and a ZIP64 locator before the end record must be
       judged: both go to the reference. */
    if (comment_len && memmem(e + 22, comment_len, "PK", 2) != NULL) goto slow;
    if (pos >= 20 && memcmp(m + pos - 20, "PK\x06\x07", 4) == 0) goto slow;
    if (disk || cd_disk || n_disk != n_total) goto slow;
    if (cd_size == U32MAX || cd_offset == U32MAX || n_total == U16MAX) goto slow;
    if (n_total > max_entries) goto slow;
    const Py_ssize_t cd_end = pos;
    if ((Py_ssize_t)cd_offset + (Py_ssize_t)cd_size != cd_end) goto slow;

    entries = PyList_New(n_total);
    if (!entries) goto error;
    if (!ns_init(&names, n_total)) {
        PyErr_NoMemory();
        goto error;
    }
    Py_ssize_t p = cd_offset;
    unsigned long long total = 0;
    Py_ssize_t expected = 0; /* entries must tile the file in central-directory order */
    char lower[MAX_NAME];
    for (Py_ssize_t index = 0; index < n_total; index++) {
        if (p + 46 > cd_end || memcmp(m + p, "PK\x01\x02", 4) != 0) goto slow;
        const unsigned char *r = m + p;
        uint16_t flags = rd16(r + 8), method = rd16(r + 10);
        uint32_t crc = rd32(r + 16), csize = rd32(r + 20), usize = rd32(r + 24);
        uint16_t nlen = rd16(r + 28), xlen = rd16(r + 30), clen = rd16(r + 32), disk_start = rd16(r + 34);
        uint32_t ext_attr = rd32(r + 38), hoff = rd32(r + 42);
        Py_ssize_t rec_end = p + 46 + nlen + xlen + clen;
        if (rec_end > cd_end) goto slow;
        const unsigned char *name = r + 46;
        if (!plain_name(name, nlen)) goto slow;
        if (clen || !plain_extra(name + nlen, xlen)) goto slow;
        if (usize == U32MAX || csize == U32MAX || hoff == U32MAX || disk_start != 0) goto slow;
        if (!plain_header(rd16(r + 6), rd16(r + 12), rd16(r + 14))) goto slow;
        if (rd16(r + 36) & ~1u) goto slow; /* internal attributes other than "text" */
        if (flags & (FLAG_ENCRYPTED | FLAG_STRONG | FLAG_MASKED)) goto slow;
        if (method != 0 && method != 8) goto slow;
        if (method == 0 && (flags & FLAG_DATA_DESCRIPTOR)) goto slow;
        int is_dir = name[nlen - 1] == '/';
        if ((ext_attr & 0x10u) && !is_dir) goto slow; /* the DOS directory attribute on a file */
        uint32_t mode = (ext_attr >> 16) & 0xFFFFu;
        uint16_t host = rd16(r + 4) >> 8;
        if (mode && host != 3) goto slow; /* a Unix mode from a host whose modes readers ignore */
        if (mode && (((mode & S_TYPE) == 0 && (mode & 0111u)) || !plain_mode(mode, is_dir))) goto slow;
        if (mode) {
            uint32_t ftype = mode & S_TYPE;
            if (ftype == S_LNK) goto slow;
            if (ftype != 0 && ftype != S_REG && ftype != S_DIR) goto slow;
            if (ftype != 0 && (ftype == S_DIR) != is_dir) goto slow;
        }
        if (is_dir && (usize || csize > MAX_EMPTY_DEFLATE)) goto slow;
        if (usize > max_entry) goto slow;
        total += usize;
        if (total > max_total) goto slow;
        /* max_ratio * csize cannot overflow below 2^32 * 2^32; above, no 32-bit size can exceed the ratio. */
        if (usize > ratio_floor && max_ratio < (1ull << 32) &&
            (unsigned long long)usize > max_ratio * (csize ? csize : 1))
            goto slow;
        if (method == 0 && csize != usize) goto slow;
        /* The local header must repeat what the central directory says. */
        if ((Py_ssize_t)hoff != expected) goto slow;
        if ((Py_ssize_t)hoff + 30 > (Py_ssize_t)cd_offset || memcmp(m + hoff, "PK\x03\x04", 4) != 0) goto slow;
        const unsigned char *l = m + hoff;
        uint16_t lflags = rd16(l + 6), lmethod = rd16(l + 8);
        uint32_t lcrc = rd32(l + 14), lcsize = rd32(l + 18), lusize = rd32(l + 22);
        uint16_t lnlen = rd16(l + 26), lxlen = rd16(l + 28);
        if ((Py_ssize_t)hoff + 30 + lnlen + lxlen > (Py_ssize_t)cd_offset) goto slow;
        if (lnlen != nlen || memcmp(l + 30, name, nlen) != 0) goto slow;
        if (lmethod != method || lflags != flags) goto slow;
        if (!plain_header(rd16(l + 4), rd16(l + 10), rd16(l + 12))) goto slow;
        if (!plain_extra(l + 30 + lnlen, lxlen)) goto slow;
        Py_ssize_t data_offset = (Py_ssize_t)hoff + 30 + lnlen + lxlen;
        Py_ssize_t end = data_offset + csize;
        if (end > (Py_ssize_t)cd_offset) goto slow;
        if (lflags & FLAG_DATA_DESCRIPTOR) {
            /* Local CRC and sizes: zero (as writers leave them) or the central directory's. */
            if ((lcrc != 0 && lcrc != crc) || (lcsize != 0 && lcsize != csize) || (lusize != 0 && lusize != usize))
                goto slow;
            Py_ssize_t avail = (Py_ssize_t)cd_offset - end;
            if (avail > 24) avail = 24;
            const unsigned char *d = m + end;
            Py_ssize_t off = (avail >= 4 && memcmp(d, "PK\x07\x08", 4) == 0) ? 4 : 0;
            if (avail >= off + 12 && rd32(d + off) == crc && rd32(d + off + 4) == csize &&
                rd32(d + off + 8) == usize)
                end += off + 12;
            else if (avail >= off + 20 && rd32(d + off) == crc && rd64(d + off + 4) == csize &&
                     rd64(d + off + 12) == usize)
                end += off + 20;
            else
                goto slow;
        } else if (lcrc != crc || lcsize != csize || lusize != usize) {
            goto slow;
        }
        expected = end;

        /* Duplicates after case folding (ASCII: NFC is the identity and casefold is lower-casing). */
        Py_ssize_t flen = nlen;
        while (flen > 0 && name[flen - 1] == '/') flen--;
        for (Py_ssize_t i = 0; i < flen; i++) {
            unsigned char c = name[i];
            lower[i] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
        }
        int added = ns_add(&names, lower, (size_t)flen, !is_dir);
        if (added < 0) {
            PyErr_NoMemory();
            goto error;
        }
        if (added == 0) goto slow;

        PyObject *item = ((PyTypeObject *)entry_type)->tp_alloc((PyTypeObject *)entry_type, N_FIELDS);
        if (!item) goto error;
        PyObject *fields[N_FIELDS] = {
            PyUnicode_DecodeASCII((const char *)name, nlen, NULL),
            PyLong_FromSsize_t(index),
            PyBool_FromLong(is_dir),
            PyLong_FromLong(method),
            PyLong_FromLong(flags),
            PyLong_FromUnsignedLong(crc),
            PyLong_FromUnsignedLong(csize),
            PyLong_FromUnsignedLong(usize),
            PyLong_FromUnsignedLong(hoff),
            PyLong_FromSsize_t(data_offset),
            PyLong_FromSsize_t(end),
            PyLong_FromUnsignedLong(mode),
            PyBytes_FromStringAndSize((const char *)r, rec_end - p),
        };
        int bad = 0;
        for (int i = 0; i < N_FIELDS; i++) {
            if (!fields[i]) bad = 1;
            PyTuple_SET_ITEM(item, i, fields[i] ? fields[i] : Py_NewRef(Py_None));
        }
        PyList_SET_ITEM(entries, index, item);
        if (bad) goto error;
        /* Only strings, integers and bytes: the entry can never be part of a reference cycle, so the cyclic
           collector need not look at it (CPython untracks such tuples itself, but only once a collection has
           traversed them; 60,000 entries would cost several collections first). */
        if (untrack) PyObject_GC_UnTrack(item);
        p = rec_end;
    }
    if (p != cd_end || expected != (Py_ssize_t)cd_offset) goto slow;

    /* No entry may lie under a file of the same (folded) name. */
    if (ns_file_as_dir(&names)) goto slow;
    PyObject *comment = PyBytes_FromStringAndSize((const char *)m + pos + 22, comment_len);
    if (!comment) goto error;
    result = Py_BuildValue("(NNn)", entries, comment, (Py_ssize_t)cd_offset);
    ns_free(&names);
    PyBuffer_Release(&view);
    return result;

slow:
    ns_free(&names);
    PyBuffer_Release(&view);
    Py_XDECREF(entries);
    Py_RETURN_NONE;
error:
    ns_free(&names);
    PyBuffer_Release(&view);
    Py_XDECREF(entries);
    return NULL;
}

/* -- digest ---------------------------------------------------------------------------------------------------- */

typedef struct {
    Py_ssize_t offset, csize, usize;
    uint32_t crc;
    int method;
    int skip; /* too large: left to the caller, which streams it */
} Span;

typedef struct {
    const unsigned char *base;
    Py_ssize_t base_len;
    const Span *spans;
    Py_ssize_t first, last; /* [first, last) */
    const EVP_MD *md;
    unsigned char *out; /* digest_size bytes per span */
    unsigned int digest_size;
    Py_ssize_t failed; /* first span index that did not check out, or -1 */
} Job;

typedef struct {
    EVP_MD_CTX *ctx;
    unsigned char *buf;
    size_t cap;
    z_stream z;
    int z_ok;
} Worker;

/* Progress inside the large entries hashed on the calling thread: compressed bytes consumed are passed to a
   Python callable every `step` bytes, with the GIL taken back for the call (and for any pending signal, so
   Ctrl-C stops a long entry). Worker threads have none (NULL). */
typedef struct {
    PyObject *callback;
    PyThreadState *ts; /* the calling thread's state while the GIL is released */
    Py_ssize_t step, pending;
    int raised; /* the callback raised, or a signal handler did: the exception is set */
} Reporter;

/* 0 when the callback raised (the span is then abandoned); 1 otherwise. Called without the GIL. */
static int report(Reporter *r, Py_ssize_t n, int flush) {
    if (!r) return 1;
    r->pending += n;
    if (r->pending <= 0 || (!flush && r->pending < r->step)) return 1;
    PyEval_RestoreThread(r->ts);
    PyObject *arg = PyLong_FromSsize_t(r->pending);
    PyObject *res = arg ? PyObject_CallOneArg(r->callback, arg) : NULL;
    r->pending = 0;
    r->raised = !res || PyErr_CheckSignals() < 0;
    Py_XDECREF(res);
    Py_XDECREF(arg);
    r->ts = PyEval_SaveThread();
    return !r->raised;
}

static void drop_pages(const unsigned char *base, Py_ssize_t start, Py_ssize_t end) {
    if (end - start < (Py_ssize_t)DROP_MIN) return;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)(base + start), b = (uintptr_t)(base + end);
    a -= a % (uintptr_t)page;
    madvise((void *)a, b - a, MADV_DONTNEED);
}

static uint32_t crc_update(uint32_t crc, const unsigned char *p, Py_ssize_t len) {
    while (len > 0) {
        Py_ssize_t step = len > (1 << 30) ? (1 << 30) : len;
#ifdef HAVE_LIBDEFLATE
        crc = libdeflate_crc32(crc, p, (size_t)step);
#else
        crc = (uint32_t)crc32(crc, p, (uInt)step);
#endif
        p += step;
        len -= step;
    }
    return crc;
}

/* 1 when the span inflates to exactly its size and CRC, feeding the hash; 0 otherwise. Large spans are read
   piece by piece: the CRC and the digest go over each piece while it is in cache, the mapped pages already
   read are released as it goes (resident memory stays flat), and progress is reported to `r` if there is one. */
static int check_span(const Job *job, const Span *s, Worker *w, unsigned char *digest_out, Reporter *r) {
    if (s->offset < 0 || s->csize < 0 || s->usize < 0 || s->offset + s->csize > job->base_len) return 0;
    const unsigned char *data = job->base + s->offset;
    if (EVP_DigestInit_ex(w->ctx, job->md, NULL) != 1) return 0;
    uint32_t crc = 0;
    Py_ssize_t dropped = 0; /* compressed bytes whose pages were released */
    if (s->method == 0) {
        if (s->csize != s->usize) return 0;
        for (Py_ssize_t at = 0; at < s->csize;) {
            Py_ssize_t piece = s->csize - at < (Py_ssize_t)STORED_PIECE ? s->csize - at : (Py_ssize_t)STORED_PIECE;
            crc = crc_update(crc, data + at, piece);
            if (EVP_DigestUpdate(w->ctx, data + at, (size_t)piece) != 1) return 0;
            at += piece;
            if (at - dropped >= (Py_ssize_t)DROP_STEP) {
                drop_pages(job->base, s->offset + dropped, s->offset + at);
                dropped = at;
            }
            if (!report(r, piece, 0)) return 0;
        }
    } else {
        /* Inflated by zlib in every build: the reference (Python's zlib module) uses the same library, so a
           stream it refuses is refused here too. libdeflate inflates faster but accepts what zlib refuses (the
           reserved length symbols 286/287 and distance codes 30/31): a verdict must not depend on the build. */
        z_stream *z = &w->z;
        if (inflateReset(z) != Z_OK) return 0;
        Py_ssize_t fed = 0, produced = 0, counted = 0;
        z->avail_in = 0;
        int ret = Z_OK;
        while (ret != Z_STREAM_END) {
            if (z->avail_in == 0 && fed < s->csize) {
                Py_ssize_t step = s->csize - fed;
                if (step > (1 << 30)) step = 1 << 30;
                z->next_in = (Bytef *)(data + fed);
                z->avail_in = (uInt)step;
                fed += step;
            }
            z->next_out = w->buf;
            z->avail_out = (uInt)w->cap;
            ret = inflate(z, Z_NO_FLUSH);
            if (ret != Z_OK && ret != Z_STREAM_END) return 0; /* corrupt, or truncated (Z_BUF_ERROR) */
            size_t got = w->cap - z->avail_out;
            produced += (Py_ssize_t)got;
            if (produced > s->usize) return 0;
            if (got) {
                crc = crc_update(crc, w->buf, (Py_ssize_t)got);
                if (EVP_DigestUpdate(w->ctx, w->buf, got) != 1) return 0;
            }
            Py_ssize_t used = fed - (Py_ssize_t)z->avail_in;
            if (used - dropped >= (Py_ssize_t)DROP_STEP) {
                drop_pages(job->base, s->offset + dropped, s->offset + used);
                dropped = used;
            }
            if (!report(r, used - counted, 0)) return 0;
            counted = used;
        }
        if (z->avail_in != 0 || fed != s->csize) return 0; /* bytes after the end of the compressed stream */
        if (produced != s->usize) return 0;
    }
    drop_pages(job->base, s->offset + dropped, s->offset + s->csize);
    if (crc != s->crc) return 0;
    unsigned int n = 0;
    return EVP_DigestFinal_ex(w->ctx, digest_out, &n) == 1 && n == job->digest_size && report(r, 0, 1);
}

static int worker_init(Worker *w) {
    memset(w, 0, sizeof *w);
    w->ctx = EVP_MD_CTX_new();
    w->cap = OUT_CHUNK;
    w->buf = malloc(w->cap);
    w->z_ok = inflateInit2(&w->z, -15) == Z_OK;
    return w->ctx && w->buf && w->z_ok;
}

static void worker_free(Worker *w) {
    if (w->z_ok) inflateEnd(&w->z);
    free(w->buf);
    EVP_MD_CTX_free(w->ctx);
}

static void *run_job(void *arg) {
    Job *job = arg;
    Worker w;
    if (!worker_init(&w)) {
        job->failed = job->first;
    } else {
        for (Py_ssize_t i = job->first; i < job->last; i++) {
            if (job->spans[i].skip) continue;
            if (!check_span(job, &job->spans[i], &w, job->out + (size_t)i * job->digest_size, NULL)) {
                job->failed = i;
                break;
            }
        }
    }
    worker_free(&w);
    return NULL;
}

/* Entry fields read from signery.archive.ZipEntry (a named tuple), by position. */
enum { F_METHOD = 3, F_CRC = 5, F_CSIZE = 6, F_SIZE = 7, F_DATA = 9 };

static int read_span(PyObject *entry, Span *s) {
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != N_FIELDS) {
        PyErr_SetString(PyExc_TypeError, "entries must be ZipEntry tuples");
        return -1;
    }
    s->offset = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, F_DATA));
    s->csize = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, F_CSIZE));
    s->usize = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, F_SIZE));
    s->crc = (uint32_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(entry, F_CRC));
    s->method = (int)PyLong_AsLong(PyTuple_GET_ITEM(entry, F_METHOD));
    return PyErr_Occurred() ? -1 : 0;
}

/* The work one span costs, in bytes: CRC and digest run over its uncompressed size, and inflating is paid per
   byte of output too; a small fixed part stands for the per-entry set-up. */
static Py_ssize_t span_weight(const Span *s) { return s->usize + s->csize / 4 + 256; }

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
static EVP_MD *fetch_md(const char *name, const EVP_MD *(*legacy)(void)) {
    (void)legacy;
    return EVP_MD_fetch(NULL, name, NULL);
}
static void free_md(EVP_MD *md) { EVP_MD_free(md); }
#else /* OpenSSL 1.1: no provider store, nothing to fetch or free */
static EVP_MD *fetch_md(const char *name, const EVP_MD *(*legacy)(void)) {
    (void)name;
    return (EVP_MD *)legacy();
}
static void free_md(EVP_MD *md) { (void)md; }
#endif

static PyObject *digest(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view;
    PyObject *entries_obj;
    const char *algorithm;
    int threads, as_hex = 0;
    Py_ssize_t max_entry = PY_SSIZE_T_MAX, step = 1 << 20;
    PyObject *progress = Py_None;
    if (!PyArg_ParseTuple(args, "y*Osi|pnOn", &view, &entries_obj, &algorithm, &threads, &as_hex, &max_entry,
                          &progress, &step))
        return NULL;
    if (progress != Py_None && !PyCallable_Check(progress)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "progress must be callable or None");
        return NULL;
    }
    if (step < 1) step = 1;
    /* An explicitly fetched digest: with OpenSSL 3, initialising a context from EVP_sha256() looks the
       implementation up again in the provider store on every call, which costs more than hashing a small entry. */
    EVP_MD *md = NULL;
    if (strcmp(algorithm, "sha256") == 0)
        md = fetch_md("SHA256", EVP_sha256);
    else if (strcmp(algorithm, "sha512") == 0)
        md = fetch_md("SHA512", EVP_sha512);
    if (!md) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "unsupported algorithm %s", algorithm);
        return NULL;
    }
    PyObject *seq = PySequence_Fast(entries_obj, "entries must be a sequence");
    if (!seq) {
        free_md(md);
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    unsigned int dsize = (unsigned int)EVP_MD_size(md);
    Span *spans = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Span));
    unsigned char *out = PyMem_Malloc(n ? (size_t)n * dsize : 1);
    PyObject *result = NULL;
    if (!spans || !out) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t weight = 0, small = 0; /* compressed bytes of the entries checked in parallel */
    for (Py_ssize_t i = 0; i < n; i++) {
        if (read_span(PySequence_Fast_GET_ITEM(seq, i), &spans[i]) < 0) goto done;
        spans[i].skip = spans[i].csize >= max_entry || spans[i].usize >= max_entry;
        if (!spans[i].skip) {
            weight += span_weight(&spans[i]);
            small += spans[i].csize;
        }
    }
    if (threads < 1) threads = 1;
    if (threads > 16) threads = 16;
    if (threads > n) threads = n ? (int)n : 1;
    /* Too little work to be worth a thread: under about 1 MiB of output to check and hash each. */
    if (weight / (1 << 20) + 1 < threads) threads = (int)(weight / (1 << 20) + 1);
    Job jobs[16];
    /* Contiguous ranges of about equal compressed weight. */
    Py_ssize_t at = 0, acc = 0;
    for (int t = 0; t < threads; t++) {
        jobs[t] = (Job){view.buf, view.len, spans, at, at, md, out, dsize, -1};
        Py_ssize_t goal = weight / threads * (t + 1);
        while (at < n && (acc < goal || t == threads - 1)) {
            if (!spans[at].skip) acc += span_weight(&spans[at]);
            at++;
        }
        jobs[t].last = at;
    }
    pthread_t tids[16];
    int started[16] = {0};
    Py_BEGIN_ALLOW_THREADS;
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&tids[t], NULL, run_job, &jobs[t]) == 0;
    run_job(&jobs[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tids[t], NULL);
        else
            run_job(&jobs[t]);
    }
    Py_END_ALLOW_THREADS;
    for (int t = 0; t < threads; t++) {
        if (jobs[t].failed >= 0) {
            result = PyLong_FromSsize_t(jobs[t].failed);
            goto done;
        }
    }
    /* With progress, the entries checked in parallel above are reported in one call, and then the large ones
       are hashed here, one after the other on this thread, reporting as they go: each compressed byte once. */
    if (progress != Py_None) {
        Reporter rep = {progress, NULL, step, 0, 0};
        Worker w;
        Job whole = {view.buf, view.len, spans, 0, n, md, out, dsize, -1};
        int ready = worker_init(&w);
        rep.ts = PyEval_SaveThread();
        if (!ready || !report(&rep, small, 1)) whole.failed = 0;
        for (Py_ssize_t i = 0; ready && whole.failed < 0 && i < n; i++) {
            if (spans[i].skip && !check_span(&whole, &spans[i], &w, out + (size_t)i * dsize, &rep)) whole.failed = i;
            spans[i].skip = 0;
        }
        worker_free(&w);
        PyEval_RestoreThread(rep.ts);
        if (rep.raised) goto done;
        if (whole.failed >= 0) {
            result = PyLong_FromSsize_t(whole.failed);
            goto done;
        }
    }
    result = PyList_New(n);
    if (!result) goto done;
    static const char hexdigits[] = "0123456789abcdef";
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *raw = out + (size_t)i * dsize;
        PyObject *b;
        if (spans[i].skip) {
            b = Py_NewRef(Py_None);
        } else if (as_hex) {
            b = PyUnicode_New((Py_ssize_t)dsize * 2, 127);
            if (b) {
                Py_UCS1 *h = PyUnicode_1BYTE_DATA(b);
                for (unsigned int k = 0; k < dsize; k++) {
                    h[2 * k] = (Py_UCS1)hexdigits[raw[k] >> 4];
                    h[2 * k + 1] = (Py_UCS1)hexdigits[raw[k] & 15];
                }
            }
        } else {
            b = PyBytes_FromStringAndSize((const char *)raw, dsize);
        }
        if (!b) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, b);
    }
done:
    PyMem_Free(spans);
    PyMem_Free(out);
    Py_DECREF(seq);
    free_md(md);
    PyBuffer_Release(&view);
    return result;
}

/* -- subjects_json ---------------------------------------------------------------------------------------------- */

/* What signery.formats.native._subjects_json writes for plain names: the RFC 8785 form of the statement's subject
   array contents, ``{"digest":{"<alg>":"<hex>"},"name":"<name>"}`` joined by commas. None when any name or digest
   is not ASCII, or holds a character JSON escapes (below 0x20, '"', '\\'): the Python function handles those. */
static int plain_json_text(PyObject *o, const char **p, Py_ssize_t *n) {
    if (!PyUnicode_Check(o) || !PyUnicode_IS_ASCII(o)) return 0;
    *p = (const char *)PyUnicode_1BYTE_DATA(o);
    *n = PyUnicode_GET_LENGTH(o);
    for (Py_ssize_t i = 0; i < *n; i++) {
        unsigned char c = (unsigned char)(*p)[i];
        if (c < 0x20 || c == '"' || c == '\\') return 0;
    }
    return 1;
}

static PyObject *subjects_json(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *have_obj, *alg_obj;
    if (!PyArg_ParseTuple(args, "OU", &have_obj, &alg_obj)) return NULL;
    const char *alg;
    Py_ssize_t alg_len;
    if (!plain_json_text(alg_obj, &alg, &alg_len)) Py_RETURN_NONE;
    PyObject *have = PySequence_Fast(have_obj, "subjects must be a sequence of (name, digest) pairs");
    if (!have) return NULL;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(have);
    static const char a[] = "{\"digest\":{\"", b[] = "\":\"", c[] = "\"},\"name\":\"", d[] = "\"}";
    const Py_ssize_t fixed = (Py_ssize_t)(sizeof a + sizeof b + sizeof c + sizeof d - 4) + alg_len + 1;
    /* First pass: check every pair and add up the length, so the result is allocated once. */
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(have, i);
        const char *x;
        Py_ssize_t xn, yn;
        int plain = PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2 &&
                    plain_json_text(PyTuple_GET_ITEM(pair, 0), &x, &xn) &&
                    plain_json_text(PyTuple_GET_ITEM(pair, 1), &x, &yn);
        if (!plain) {
            Py_DECREF(have);
            Py_RETURN_NONE;
        }
        if (total > PY_SSIZE_T_MAX / 2 - fixed - xn - yn) {
            Py_DECREF(have);
            return PyErr_NoMemory();
        }
        total += fixed + xn + yn;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n ? total - 1 : 0);
    if (!out) {
        Py_DECREF(have);
        return NULL;
    }
    char *w = PyBytes_AS_STRING(out);
#define PUT(src, len)                  \
    do {                               \
        memcpy(w, (src), (size_t)(len)); \
        w += (len);                    \
    } while (0)
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(have, i);
        PyObject *name = PyTuple_GET_ITEM(pair, 0), *hex = PyTuple_GET_ITEM(pair, 1);
        if (i) *w++ = ',';
        PUT(a, sizeof a - 1);
        PUT(alg, alg_len);
        PUT(b, sizeof b - 1);
        PUT(PyUnicode_1BYTE_DATA(hex), PyUnicode_GET_LENGTH(hex));
        PUT(c, sizeof c - 1);
        PUT(PyUnicode_1BYTE_DATA(name), PyUnicode_GET_LENGTH(name));
        PUT(d, sizeof d - 1);
    }
#undef PUT
    Py_DECREF(have);
    return out;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "Parse a plain ZIP archive; None when the reference parser must judge it."},
    {"digest", digest, METH_VARARGS, "Inflate, check and hash entries; the index of the first failure, if any."},
    {"subjects_json", subjects_json, METH_VARARGS, "The canonical JSON of plain (name, digest) pairs, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastzip", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastzip(void) { return PyModule_Create(&module); }
