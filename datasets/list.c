/* Lists of image/mask pairs (--data list:FILE), one pair a line:
 *   FILE.csv  image,mask  CSV (RFC 4180 quoting: a field in double quotes may hold
 *             commas, and "" inside it is one quote; no line breaks inside fields);
 *             spaces around a field are dropped; a first pair "image,mask" (any
 *             case) is a header and skipped.
 *   FILE.txt  image mask  separated by spaces or tabs (paths without blanks), as in
 *             mmsegmentation's split files.
 * Blank lines and lines starting with '#' are skipped; a trailing \r (CRLF) and a UTF-8
 * byte order mark are dropped.
 * A relative path is relative to the list's folder, not to the working directory, so
 * a list travels with its data. Splits: the training split reads FILE; the validation
 * split reads the file named by replacing the last "train" in FILE's name with "val"
 * (train.csv -> val.csv, ade_train_pairs.txt -> ade_val_pairs.txt), or FILE itself
 * when its name holds no "train" (with a warning). A malformed line is an error naming
 * FILE:LINE; a path listed twice (as written, after joining) is refused too, whatever
 * skip_bad: it is a list to fix, not a bad sample. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "datasets/internal.h"

/* The list the split reads (malloc'ed). */
static char *split_list(const struct vka_dataset *ds, const char *file, char *err)
{
    char *out = NULL;
    if (ds->split == VKA_SPLIT_TRAIN) {
        if (!(out = strdup(file)))
            vka_seterr(err, "%s: out of memory", file);
        return out;
    }
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    const char *hit = NULL;
    for (const char *s = base; (s = strstr(s, "train")); s++)
        hit = s;
    if (!hit) {
        vka_warn("%s: no \"train\" in the name to replace by \"val\", so the validation "
                 "split is this list itself", file);
        if (!(out = strdup(file)))
            vka_seterr(err, "%s: out of memory", file);
        return out;
    }
    size_t n = strlen(file) - 2 + 1; /* "train" -> "val" */
    if (!(out = malloc(n))) {
        vka_seterr(err, "%s: out of memory", file);
        return NULL;
    }
    snprintf(out, n, "%.*sval%s", (int)(hit - file), file, hit + 5);
    if (access(out, F_OK)) {
        vka_seterr(err, "%s: missing validation list (named after the training list %s, "
                   "its last \"train\" replaced by \"val\")", out, file);
        free(out);
        return NULL;
    }
    return out;
}

/* One CSV line [s, e) into at most max fields, unquoted into buf (e - s + max bytes);
 * NULL on success, else what is wrong. */
static const char *csv_fields(const char *s, const char *e, char *buf, char **f,
                              uint32_t max, uint32_t *nf)
{
    *nf = 0;
    for (;;) {
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        if (*nf == max)
            return "more than two fields; expected image,mask (quote a path holding a comma)";
        f[(*nf)++] = buf;
        if (s < e && *s == '"') {
            for (s++;; s++) {
                if (s == e)
                    return "a quoted field does not end (line breaks inside fields are "
                           "not supported)";
                if (*s == '"' && s + 1 < e && s[1] == '"')
                    *buf++ = *s++;
                else if (*s == '"')
                    break;
                else
                    *buf++ = *s;
            }
            for (s++; s < e && (*s == ' ' || *s == '\t'); s++)
                ;
            if (s < e && *s != ',')
                return "text after a closing quote";
        } else {
            char *start = buf;
            for (; s < e && *s != ','; s++) {
                if (*s == '"')
                    return "a quote inside an unquoted field (quote the whole field)";
                *buf++ = *s;
            }
            while (buf > start && (buf[-1] == ' ' || buf[-1] == '\t'))
                buf--;
        }
        *buf++ = '\0';
        if (s == e)
            return NULL;
        s++; /* the comma */
    }
}

/* One whitespace-separated line into at most max fields in buf. */
static const char *txt_fields(const char *s, const char *e, char *buf, char **f,
                              uint32_t max, uint32_t *nf)
{
    *nf = 0;
    for (;;) {
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        if (s == e)
            return NULL;
        if (*nf == max)
            return "more than two fields (a .txt list cannot hold paths with blanks: "
                   "use a .csv list)";
        f[(*nf)++] = buf;
        while (s < e && *s != ' ' && *s != '\t')
            *buf++ = *s++;
        *buf++ = '\0';
    }
}

/* path as listed, joined to the list's folder (dir, dirn bytes; NULL: the list has no
 * folder part) when relative */
static char *resolve(const char *dir, size_t dirn, const char *path)
{
    if (path[0] == '/' || !dir)
        return strdup(path);
    size_t n = dirn + strlen(path) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%.*s/%s", (int)dirn, dir, path);
    return s;
}

struct entry {
    const char *path;
    uint32_t line;
};

static int cmp_entry(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* Refuses a path that appears twice among paths (n), naming both lines. */
static int refuse_repeats(const char *list, const char *what, char **paths,
                          const uint32_t *lines, uint32_t n, char *err)
{
    struct entry *e = malloc((n ? n : 1) * sizeof(*e));
    if (!e) {
        vka_seterr(err, "%s: out of memory", list);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++)
        e[i] = (struct entry){ paths[i], lines[i] };
    qsort(e, n, sizeof(*e), cmp_entry);
    int ret = 0;
    for (uint32_t i = 1; i < n && !ret; i++)
        if (!strcmp(e[i - 1].path, e[i].path)) {
            /* two images on one mask, or one image with two masks, leave a pair
             * ambiguous; a repeated pair would weigh one sample twice */
            vka_seterr(err, "%s:%u: the %s %s is listed again (first on line %u)", list,
                       e[i].line, what, e[i].path, e[i - 1].line);
            ret = -EINVAL;
        }
    free(e);
    return ret;
}

int vka_list_read(struct vka_dataset *ds, const char *file, char *err)
{
    bool csv = vka_has_ext(file, ".csv");
    if (!csv && !vka_has_ext(file, ".txt")) {
        vka_seterr(err, "%s: a list of pairs must be a .csv (image,mask) or a .txt "
                   "(image mask) file", file);
        return -EINVAL;
    }
    char *list = split_list(ds, file, err);
    if (!list)
        return -ENOENT;
    uint8_t *text = NULL;
    char *buf = NULL;
    uint32_t *lines = NULL;
    size_t len;
    int ret = vka_file_read(list, VKA_FILE_MAX, &text, &len, err);
    if (ret)
        goto done;
    const char *slash = strrchr(list, '/'), *dir = slash ? list : NULL;
    size_t dirn = slash ? (size_t)(slash - list) : 0; /* a list in /: "" + "/" + path */
    uint32_t nlines = 1, cap = 0;
    for (size_t i = 0; i < len; i++)
        nlines += text[i] == '\n';
    ret = -ENOMEM;
    if (!(buf = malloc(len + 4)) || !(lines = malloc(nlines * sizeof(*lines)))) {
        vka_seterr(err, "%s: out of memory", list);
        goto done;
    }
    ret = 0;
    bool first = true;
    /* spreadsheet programs start a UTF-8 CSV with a byte order mark */
    size_t p = len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3) ? 3 : 0;
    for (uint32_t line = 1; p < len && !ret; line++) {
        const char *s = (const char *)text + p, *e = memchr(s, '\n', len - p);
        e = e ? e : (const char *)text + len;
        p = (size_t)(e - (const char *)text) + 1;
        if (e > s && e[-1] == '\r')
            e--;
        const char *a = s;
        while (a < e && isspace((unsigned char)*a))
            a++;
        if (a == e || *a == '#')
            continue;
        char *f[2];
        uint32_t nf;
        const char *why = memchr(s, '\0', (size_t)(e - s)) ? "a NUL byte: not a text line"
                          : csv ? csv_fields(s, e, buf, f, 2, &nf)
                                : txt_fields(s, e, buf, f, 2, &nf);
        if (!why && nf != 2)
            why = csv ? "one field; expected image,mask" : "one field; expected image mask";
        if (!why && (!f[0][0] || !f[1][0]))
            why = "an empty path";
        if (why) {
            vka_seterr(err, "%s:%u: %s", list, line, why);
            ret = -EINVAL;
            break;
        }
        bool header = first && csv && !strcasecmp(f[0], "image") && !strcasecmp(f[1], "mask");
        first = false;
        if (header)
            continue;
        char *img = resolve(dir, dirn, f[0]), *mask = resolve(dir, dirn, f[1]);
        if (!img || !mask) {
            free(img);
            free(mask);
            vka_seterr(err, "%s: out of memory", list);
            ret = -ENOMEM;
            break;
        }
        char from[VKA_ERRLEN];
        snprintf(from, sizeof(from), "listed in %s:%u", list, line);
        uint32_t before = ds->count;
        ret = vka_sample_add(ds, &cap, img, mask, from, err);
        if (ds->count > before)
            lines[before] = line;
    }
    if (!ret && ((ret = refuse_repeats(list, "image", ds->images, lines, ds->count, err)) ||
                 (ret = refuse_repeats(list, "mask", ds->masks, lines, ds->count, err))))
        goto done;
    if (!ret && !ds->count) {
        vka_seterr(err, "%s: empty dataset: no image,mask pairs listed", list);
        ret = -ENOENT;
    }
done:
    free(lines);
    free(buf);
    free(text);
    free(list);
    return ret;
}
