/*
 * classify: run an image classifier through the kdruntime C API.
 *
 *   classify MODEL.tflite IMAGE.ppm|IMAGE.pgm [LABELS.txt] [TOP_K]
 *
 * Reads a binary PPM (P6, RGB) or PGM (P5, grey) image with maxval 255, letterboxes it into the
 * model's input with kd_letterbox (the same integer letterbox the trainer used), invokes, and
 * prints every raw int8 output value on one line ("raw: ...") and then the top-k classes with
 * their int8 score and dequantised value (scale * (q - zero_point)).
 * Exit status: 0 on success, 1 on usage or I/O errors, 2 on kdruntime errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdruntime.h"

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = (unsigned char *)malloc(n > 0 ? (size_t)n : 1);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        *len = (size_t)n;
    }
    fclose(f);
    return buf;
}

/* Next header number of a PNM file, skipping whitespace and '#' comments. */
static int pnm_number(const unsigned char *d, size_t len, size_t *at, size_t *out) {
    size_t v = 0;
    int digits = 0;
    while (*at < len) {
        if (d[*at] == '#') {
            while (*at < len && d[*at] != '\n') ++*at;
        } else if (d[*at] == ' ' || d[*at] == '\t' || d[*at] == '\n' || d[*at] == '\r') {
            ++*at;
        } else {
            break;
        }
    }
    while (*at < len && d[*at] >= '0' && d[*at] <= '9' && digits < 9) {
        v = v * 10 + (size_t)(d[*at] - '0');
        ++*at;
        ++digits;
    }
    *out = v;
    return digits > 0;
}

/* Parses a P6/P5 header; returns the pixel offset or 0 on error. */
static size_t parse_pnm(const unsigned char *d, size_t len, size_t *w, size_t *h, int *channels) {
    size_t at = 2, maxval;
    if (len < 3 || d[0] != 'P' || (d[1] != '6' && d[1] != '5')) return 0;
    *channels = d[1] == '6' ? 3 : 1;
    if (!pnm_number(d, len, &at, w) || !pnm_number(d, len, &at, h) ||
        !pnm_number(d, len, &at, &maxval) || maxval != 255 || at >= len)
        return 0;
    at += 1; /* the single whitespace byte after maxval */
    if (*w == 0 || *h == 0 || (len - at) / *w / *h < (size_t)*channels) return 0;
    return at;
}

static int fail(kd_interpreter *it, kd_status s, const char *what) {
    char msg[256];
    kd_interpreter_last_error(it, msg, sizeof msg);
    fprintf(stderr, "classify: %s: %s: %s\n", what, kd_status_string(s), msg);
    return 2;
}

int main(int argc, char **argv) {
    size_t model_len = 0, image_len = 0, labels_len = 0, arena_len = 0, px, w, h, i, j, n;
    size_t top_k = 5, out_len = 0, *order;
    unsigned char *model, *image, *arena, *labels = NULL;
    const uint8_t *out;
    const char **label_of = NULL;
    int channels;
    kd_interpreter it;
    kd_tensor_info oinfo;
    kd_letterbox_info geo;
    kd_status s;

    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: %s MODEL.tflite IMAGE.ppm|IMAGE.pgm [LABELS.txt] [TOP_K]\n", argv[0]);
        return 1;
    }
    if (argc == 5) top_k = (size_t)strtoul(argv[4], NULL, 10);
    model = read_file(argv[1], &model_len);
    image = read_file(argv[2], &image_len);
    if (!model || !image) {
        fprintf(stderr, "classify: cannot read %s\n", model ? argv[2] : argv[1]);
        return 1;
    }
    px = parse_pnm(image, image_len, &w, &h, &channels);
    if (!px) {
        fprintf(stderr, "classify: %s is not a binary PPM (P6) / PGM (P5) with maxval 255\n", argv[2]);
        return 1;
    }

    s = kd_model_arena_size(model, model_len, &arena_len);
    if (s != KD_STATUS_OK) {
        /* Init with an empty arena reports the detailed message of the same failure. */
        unsigned char none = 0;
        s = kd_interpreter_init(&it, model, model_len, &none, 0);
        return fail(&it, s, "model");
    }
    arena = (unsigned char *)malloc(arena_len);
    if (!arena) return 1;
    s = kd_interpreter_init(&it, model, model_len, arena, arena_len);
    if (s != KD_STATUS_OK) return fail(&it, s, "init");
    s = kd_letterbox(&it, 0, image + px, image_len - px, h, w, w * (size_t)channels,
                     channels == 3 ? KD_PIXEL_RGB : KD_PIXEL_GRAY, NULL, &geo);
    if (s != KD_STATUS_OK) return fail(&it, s, "letterbox");
    s = kd_invoke(&it);
    if (s != KD_STATUS_OK) return fail(&it, s, "invoke");
    s = kd_output_info(&it, 0, &oinfo);
    if (s == KD_STATUS_OK) s = kd_output_data(&it, 0, &out, &out_len);
    if (s != KD_STATUS_OK) return fail(&it, s, "output");
    if (oinfo.dtype != KD_DTYPE_INT8) {
        fprintf(stderr, "classify: output 0 is not int8\n");
        return 1;
    }

    if (argc >= 4 && strcmp(argv[3], "-") != 0) {
        labels = read_file(argv[3], &labels_len);
        if (!labels) {
            fprintf(stderr, "classify: cannot read %s\n", argv[3]);
            return 1;
        }
        label_of = (const char **)calloc(out_len, sizeof *label_of);
        for (i = 0, j = 0; label_of && i < labels_len && j < out_len; ++j) {
            label_of[j] = (const char *)labels + i;
            while (i < labels_len && labels[i] != '\n') ++i;
            if (i < labels_len) labels[i++] = '\0';
            if (i > 1 && labels[i - 2] == '\r') labels[i - 2] = '\0';
        }
    }

    printf("letterbox: %zux%zu -> %zux%zu at top %zu left %zu\n", h, w, geo.new_height,
           geo.new_width, geo.top, geo.left);
    printf("raw:");
    for (i = 0; i < out_len; ++i) printf(" %d", (int)(int8_t)out[i]);
    printf("\n");

    /* Top-k by int8 value, largest first; ties keep ascending index order (as kdrun). */
    if (top_k > out_len) top_k = out_len;
    order = (size_t *)malloc((out_len ? out_len : 1) * sizeof *order);
    if (!order) return 1;
    for (i = 0; i < out_len; ++i) order[i] = i;
    for (n = 0; n < top_k; ++n) {
        size_t best = n;
        for (j = n + 1; j < out_len; ++j) {
            int8_t a = (int8_t)out[order[j]], b = (int8_t)out[order[best]];
            if (a > b || (a == b && order[j] < order[best])) best = j;
        }
        i = order[n];
        order[n] = order[best];
        order[best] = i;
        i = order[n];
        printf("%zu. class %zu %s q %d value %.6f\n", n + 1, i,
               label_of && label_of[i] ? label_of[i] : "-", (int)(int8_t)out[i],
               (double)oinfo.scale * (double)((int)(int8_t)out[i] - (int)oinfo.zero_point));
    }
    free(order);
    free(label_of);
    free(labels);
    free(arena);
    free(image);
    free(model);
    return 0;
}
