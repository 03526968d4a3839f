!! Reader and writer of the native `.fkb` file (docs/format.md): a binary prefix, a text
!! header parsed line by line, then the raw little-endian tensors read straight into place.
!! Every size is checked against the file's length before anything is allocated.
module fkb_io_native
  use iso_fortran_env, only: int8, int32, int64, real32, real64
  use fkb_errors, only: FKB_OK, FKB_ERR_IO, FKB_ERR_FORMAT, FKB_ERR_VERSION, FKB_ERR_SHAPE, &
                        FKB_ERR_MEMORY, FKB_ERR_UNSUPPORTED, set_error
  use fkb_config, only: fkb_config_t, percent_decode, int_text
  use fkb_tensor, only: FKB_FLOAT32, FKB_FLOAT64, dtype_name, dtype_bytes
  use fkb_model, only: fkb_model_t, train_record_t
  use fkb_optimizer, only: slot_t
  use fkb_text, only: string_t, split_fields
  use fkb_blas, only: BLAS_INT_MAX
  implicit none
  private
  public :: MAGIC, has_magic, read_native, write_native

  character(len=8), parameter :: MAGIC = char(137) // 'FKB' // achar(13) // achar(10) // &
                                         achar(26) // achar(10)
  !> 1.1: training records; 1.2: shaped and named inputs, graphs (written only when used).
  integer(int32), parameter :: FORMAT_MAJOR = 1, FORMAT_MINOR = 2
  integer(int64), parameter :: PREFIX_BYTES = 24
  integer(int64), parameter :: MAX_HEADER_BYTES = 256_int64 * 1024 * 1024

contains

  logical function host_is_little_endian()
    integer(int8) :: bytes(4)
    bytes = transfer(1_int32, bytes)
    host_is_little_endian = bytes(1) == 1_int8
  end function host_is_little_endian

  logical function has_magic(path)
    !! True if the file starts with the first four bytes of the `.fkb` magic.
    character(len=*), intent(in) :: path
    character(len=4) :: head
    integer :: u, ios
    has_magic = .false.
    open (newunit=u, file=path, access='stream', form='unformatted', status='old', &
          action='read', iostat=ios)
    if (ios /= 0) return
    read (u, iostat=ios) head
    if (ios == 0) has_magic = head == MAGIC(1:4)
    close (u)
  end function has_magic

  subroutine read_native(path, model, stat, msg)
    character(len=*), intent(in) :: path
    type(fkb_model_t), intent(out) :: model
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    character(len=8) :: magic_read
    character(len=256) :: iomsg
    character(len=:), allocatable :: header
    integer(int32) :: major, minor
    integer(int64) :: hlen, fsize, remaining
    integer :: u, ios
    stat = FKB_OK
    open (newunit=u, file=path, access='stream', form='unformatted', status='old', &
          action='read', iostat=ios, iomsg=iomsg)
    if (ios /= 0) then
      call set_error(stat, msg, FKB_ERR_IO, "cannot open '" // path // "': " // trim(iomsg))
      return
    end if
    inquire (unit=u, size=fsize)
    read (u, iostat=ios) magic_read
    if (ios /= 0 .or. magic_read /= MAGIC) then
      call fail(FKB_ERR_FORMAT, 'not a .fkb file (bad magic bytes)')
      return
    end if
    if (.not. host_is_little_endian()) then
      call fail(FKB_ERR_UNSUPPORTED, 'big-endian hosts are not supported')
      return
    end if
    read (u, iostat=ios) major, minor, hlen
    if (ios /= 0) then
      call fail(FKB_ERR_FORMAT, 'truncated file (no complete prefix)')
      return
    end if
    if (major /= FORMAT_MAJOR) then
      call fail(FKB_ERR_VERSION, 'format version ' // int_text(int(major, int64)) // '.' // &
                int_text(int(minor, int64)) // ' is not supported (this FKB reads version ' // &
                int_text(int(FORMAT_MAJOR, int64)) // ')')
      return
    end if
    if (hlen < 1 .or. hlen > MAX_HEADER_BYTES .or. hlen > fsize - PREFIX_BYTES) then
      call fail(FKB_ERR_FORMAT, 'header length ' // int_text(hlen) // &
                ' does not fit the file (truncated or corrupt)')
      return
    end if
    allocate(character(len=hlen) :: header)
    read (u, iostat=ios) header
    if (ios /= 0) then
      call fail(FKB_ERR_FORMAT, 'truncated header')
      return
    end if
    call parse_header(header, model, stat, msg)
    if (stat /= FKB_OK) then
      msg = "'" // path // "': " // msg
      close (u)
      return
    end if
    remaining = fsize - PREFIX_BYTES - hlen
    call read_tensors(u, model, remaining, stat, msg)
    if (stat /= FKB_OK) then
      msg = "'" // path // "': " // msg
      close (u)
      return
    end if
    close (u)
    call model%prepare(stat, msg)

  contains

    subroutine fail(code, text)
      integer, intent(in) :: code
      character(len=*), intent(in) :: text
      call set_error(stat, msg, code, "'" // path // "': " // text)
      close (u)
    end subroutine fail

  end subroutine read_native

  subroutine parse_header(header, model, stat, msg)
    !! Builds the model's layers (configured, tensors declared) from the header text.
    character(len=*), intent(in) :: header
    type(fkb_model_t), intent(inout) :: model
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    type(string_t), allocatable :: lines(:), f(:)
    type(fkb_config_t) :: cfg
    character(len=:), allocatable :: key, value, lname
    integer :: i, k, eq, next_tensor, ios
    integer(int64) :: slot_len
    integer(int64), allocatable :: dims(:)
    logical :: ok, have_dtype, have_input, ended
    stat = FKB_OK
    lines = split_fields(header, new_line('a'))
    if (size(lines) == 0) then
      call set_error(stat, msg, FKB_ERR_FORMAT, 'empty header')
      return
    end if
    if (lines(1)%s /= 'fkb-model') then
      call set_error(stat, msg, FKB_ERR_FORMAT, "header must start with 'fkb-model'")
      return
    end if
    have_dtype = .false.
    have_input = .false.
    ended = .false.
    next_tensor = 0
    do i = 2, size(lines)
      if (ended) then
        call bad('text after the end record')
        return
      end if
      f = split_fields(lines(i)%s, ' ')
      if (size(f) == 0) cycle
      select case (f(1)%s)
      case ('dtype')
        if (size(f) /= 2 .or. have_dtype .or. model%n_layers > 0) then
          call bad('misplaced or malformed dtype record')
          return
        end if
        select case (f(2)%s)
        case ('float32'); model%dtype = FKB_FLOAT32
        case ('float64'); model%dtype = FKB_FLOAT64
        case default
          call set_error(stat, msg, FKB_ERR_UNSUPPORTED, "unsupported dtype '" // f(2)%s // "'")
          return
        end select
        have_dtype = .true.
      case ('input')
        ! `input D1[,D2...] [name=NAME]`; several inputs allowed before the first layer.
        if (size(f) < 2 .or. size(f) > 3 .or. .not. have_dtype .or. model%n_layers > 0) then
          call bad('misplaced or malformed input record')
          return
        end if
        if (.not. read_shape(f(2)%s, dims)) then
          call bad("input shape must be positive integers D1,D2,... with a product in 1.." // &
                   int_text(BLAS_INT_MAX))
          return
        end if
        lname = ''
        if (size(f) == 3) then
          ok = f(3)%s(1:min(5, len(f(3)%s))) == 'name='
          if (ok) call percent_decode(f(3)%s(6:), lname, ok)
          if (.not. ok .or. len(lname) == 0) then
            call bad("malformed input name '" // f(3)%s // "'")
            return
          end if
        end if
        call model%add_input(dims, lname, stat, msg)
        if (stat /= FKB_OK) then
          msg = 'header line ' // int_text(int(i, int64)) // ': ' // msg
          return
        end if
        have_input = .true.
      case ('output')
        if (size(f) /= 2 .or. model%n_layers == 0 .or. allocated(model%outputs)) then
          call bad('misplaced or malformed output record (one, after the layers)')
          return
        end if
        if (.not. tensors_complete()) return
        call model%set_outputs(f(2)%s, stat, msg)
        if (stat /= FKB_OK) then
          msg = 'header line ' // int_text(int(i, int64)) // ': ' // msg
          return
        end if
      case ('layer')
        if (.not. have_input .or. size(f) < 2) then
          call bad('misplaced or malformed layer record')
          return
        end if
        if (.not. tensors_complete()) return
        cfg = fkb_config_t()
        lname = ''
        do k = 3, size(f)
          eq = index(f(k)%s, '=')
          if (eq < 2) then
            call bad("malformed option '" // f(k)%s // "'")
            return
          end if
          key = f(k)%s(1:eq - 1)
          call percent_decode(f(k)%s(eq + 1:), value, ok)
          if (.not. ok) then
            call bad("bad percent-encoding in '" // f(k)%s // "'")
            return
          end if
          if (key == 'name') then
            lname = value
          else if (key == 'inputs') then
            call cfg%set(key, f(k)%s(eq + 1:))   ! a list: the model decodes each name
          else
            call cfg%set(key, value)
          end if
        end do
        if (len(lname) == 0) then
          call bad('layer without a name')
          return
        end if
        call model%add_layer(f(2)%s, lname, cfg, stat, msg)
        if (stat /= FKB_OK) return
        next_tensor = 1
      case ('tensor')
        if (size(f) /= 4 .or. model%n_layers == 0) then
          call bad('misplaced or malformed tensor record')
          return
        end if
        if (.not. tensor_matches(f)) return
        next_tensor = next_tensor + 1
      case ('meta')
        if (size(f) < 2 .or. size(f) > 3 .or. .not. have_input) then
          call bad('malformed meta record')
          return
        end if
        if (.not. tensors_complete()) return
        call percent_decode(f(2)%s, key, ok)
        value = ''
        if (ok .and. size(f) == 3) call percent_decode(f(3)%s, value, ok)
        if (.not. ok) then
          call bad('bad percent-encoding in meta record')
          return
        end if
        call model%set_meta(key, value)
      case ('optimizer', 'loss', 'state')
        ! Training state (format 1.1): kept for the network to restore.
        if (size(f) /= 2 .or. .not. have_input) then
          call bad('malformed ' // f(1)%s // ' record')
          return
        end if
        if (.not. tensors_complete()) return
        if (.not. allocated(model%train)) then
          allocate(model%train)
          allocate(model%train%slot_names(0), model%train%slots(0))
        end if
        call percent_decode(f(2)%s, value, ok)
        if (.not. ok) then
          call bad('bad percent-encoding')
          return
        end if
        select case (f(1)%s)
        case ('optimizer'); model%train%optimizer = value
        case ('loss'); model%train%loss = value
        case ('state'); model%train%state = value
        end select
      case ('slot')
        ios = 1
        if (size(f) == 4 .and. allocated(model%train)) then
          if (f(3)%s == 'float64' .and. verify(f(4)%s, '0123456789') == 0 .and. &
              len(f(4)%s) <= 18) read (f(4)%s, *, iostat=ios) slot_len
        end if
        if (ios /= 0) then
          call bad('malformed slot record (it must follow the optimizer record)')
          return
        end if
        model%train%slot_names = [model%train%slot_names, string_t(f(2)%s)]
        model%train%slots = [model%train%slots, slot_t()]
        ! Only the length is kept now; the data is allocated after the size check.
        model%train%slots(size(model%train%slots))%v = [real(slot_len, real64)]
      case ('end')
        if (.not. tensors_complete()) return
        if (allocated(model%train)) then
          if (.not. (allocated(model%train%optimizer) .and. allocated(model%train%loss) .and. &
                     allocated(model%train%state))) then
            call bad('incomplete training records (optimizer, loss and state go together)')
            return
          end if
        end if
        ended = .true.
      case default
        call bad("unknown record '" // f(1)%s // "'")
        return
      end select
    end do
    if (.not. ended) call bad("missing 'end' record")
    if (stat == FKB_OK .and. .not. have_input) call bad("missing 'input' record")

  contains

    subroutine bad(text)
      character(len=*), intent(in) :: text
      call set_error(stat, msg, FKB_ERR_FORMAT, 'header line ' // int_text(int(i, int64)) // &
                     ': ' // text)
    end subroutine bad

    logical function read_shape(text, d)
      ! "D1,D2,..." with every Di >= 1 and the product within BLAS' integer range.
      character(len=*), intent(in) :: text
      integer(int64), allocatable, intent(out) :: d(:)
      type(string_t), allocatable :: items(:)
      integer :: j, ios2
      read_shape = .false.
      items = split_fields(text, ',')
      allocate(d(size(items)))
      if (size(items) == 0 .or. size(items) > 8) return
      do j = 1, size(items)
        if (verify(items(j)%s, '0123456789') /= 0 .or. len(items(j)%s) > 12) return
        read (items(j)%s, *, iostat=ios2) d(j)
        if (ios2 /= 0 .or. d(j) < 1) return
      end do
      ! Each factor <= 1e12, so checking the running product against the limit cannot overflow.
      read_shape = .true.
      if (d(1) > BLAS_INT_MAX) read_shape = .false.
      do j = 2, size(d)
        if (.not. read_shape) return
        if (product(d(1:j)) > BLAS_INT_MAX) read_shape = .false.
      end do
    end function read_shape

    logical function tensors_complete()
      ! The previous layer got every tensor it declared.
      tensors_complete = .true.
      if (model%n_layers == 0 .or. next_tensor == 0) return
      associate (l => model%layers(model%n_layers)%l)
        if (allocated(l%params)) then
          if (next_tensor <= size(l%params)) then
            call set_error(stat, msg, FKB_ERR_SHAPE, "layer '" // l%name // "' (" // &
                           l%type_name // "): missing tensor '" // l%params(next_tensor)%name &
                           // "'")
            tensors_complete = .false.
          end if
        end if
      end associate
      next_tensor = 0
    end function tensors_complete

    logical function tensor_matches(f)
      type(string_t), intent(in) :: f(:)
      tensor_matches = .false.
      associate (l => model%layers(model%n_layers)%l)
        if (.not. allocated(l%params)) then
          call set_error(stat, msg, FKB_ERR_SHAPE, "layer '" // l%name // "' (" // &
                         l%type_name // ") takes no tensors, got '" // f(2)%s // "'")
          return
        end if
        if (next_tensor > size(l%params)) then
          call set_error(stat, msg, FKB_ERR_SHAPE, "layer '" // l%name // "' (" // &
                         l%type_name // "): unexpected extra tensor '" // f(2)%s // "'")
          return
        end if
        associate (t => l%params(next_tensor))
          if (f(2)%s /= t%name) then
            call set_error(stat, msg, FKB_ERR_SHAPE, "layer '" // l%name // "' (" // &
                           l%type_name // "): expected tensor '" // t%name // "', got '" // &
                           f(2)%s // "'")
          else if (f(3)%s /= dtype_name(model%dtype)) then
            call set_error(stat, msg, FKB_ERR_FORMAT, "layer '" // l%name // "': tensor '" // &
                           t%name // "' is " // f(3)%s // ' in a ' // &
                           dtype_name(model%dtype) // ' model')
          else if (f(4)%s /= t%shape_text()) then
            call set_error(stat, msg, FKB_ERR_SHAPE, "layer '" // l%name // "' (" // &
                           l%type_name // "): tensor '" // t%name // "' has shape (" // &
                           f(4)%s // '), the layer needs (' // t%shape_text() // ')')
          else
            tensor_matches = .true.
          end if
        end associate
      end associate
    end function tensor_matches

  end subroutine parse_header

  subroutine read_tensors(u, model, remaining, stat, msg)
    !! Reads every declared tensor; the sizes are checked against the bytes left first.
    integer, intent(in) :: u
    type(fkb_model_t), intent(inout) :: model
    integer(int64), intent(in) :: remaining
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    integer(int64) :: need
    integer :: i, k, ios
    stat = FKB_OK
    need = 0
    do i = 1, model%n_layers
      if (.not. allocated(model%layers(i)%l%params)) cycle
      do k = 1, size(model%layers(i)%l%params)
        need = need + model%layers(i)%l%params(k)%numel() * dtype_bytes(model%dtype)
        if (need > remaining) then
          call set_error(stat, msg, FKB_ERR_FORMAT, 'truncated file: tensor data needs more &
                         &than the ' // int_text(remaining) // ' bytes left')
          return
        end if
      end do
    end do
    if (allocated(model%train)) then
      do k = 1, size(model%train%slots)
        need = need + 8 * int(model%train%slots(k)%v(1), int64)
        if (need > remaining) then
          call set_error(stat, msg, FKB_ERR_FORMAT, 'truncated file: optimizer state needs &
                         &more than the ' // int_text(remaining) // ' bytes left')
          return
        end if
      end do
    end if
    if (need < remaining) then
      call set_error(stat, msg, FKB_ERR_FORMAT, int_text(remaining - need) // &
                     ' unexpected bytes after the tensor data')
      return
    end if
    do i = 1, model%n_layers
      if (.not. allocated(model%layers(i)%l%params)) cycle
      do k = 1, size(model%layers(i)%l%params)
        associate (t => model%layers(i)%l%params(k))
          if (model%dtype == FKB_FLOAT64) then
            allocate(t%r64(t%numel()), stat=ios)
            if (ios == 0) read (u, iostat=ios) t%r64
          else
            allocate(t%r32(t%numel()), stat=ios)
            if (ios == 0) read (u, iostat=ios) t%r32
          end if
          if (ios /= 0) then
            call set_error(stat, msg, FKB_ERR_MEMORY, 'cannot allocate or read tensor ' // t%name)
            return
          end if
        end associate
      end do
    end do
    if (allocated(model%train)) then
      do k = 1, size(model%train%slots)
        associate (sl => model%train%slots(k))
          allocate(sl%m(int(sl%v(1), int64)), stat=ios)
          deallocate(sl%v)
          if (ios == 0) read (u, iostat=ios) sl%m
          if (ios /= 0) then
            call set_error(stat, msg, FKB_ERR_MEMORY, 'cannot read optimizer state')
            return
          end if
        end associate
      end do
    end if
  end subroutine read_tensors

  logical function uses_v12(model)
    !! Whether a file of this model needs format 1.2: its records (graphs, shaped or named
    !! inputs) or a layer type added in 1.2 (older readers refuse those by name anyway, but the
    !! version then says why).
    type(fkb_model_t), intent(in) :: model
    character(len=*), parameter :: v12_types(*) = [character(len=24) :: 'add', 'subtract', &
      'multiply', 'average', 'maximum', 'minimum', 'concatenate', 'conv1d', 'max_pooling1d', &
      'average_pooling1d', 'global_average_pooling1d', 'global_max_pooling1d', &
      'up_sampling1d', 'zero_padding1d', 'cropping1d', 'reshape', 'permute', &
      'repeat_vector', 'simple_rnn', 'lstm', 'gru', 'bidirectional']
    integer :: i
    uses_v12 = model%uses_graph_records()
    do i = 1, model%n_layers
      if (uses_v12) return
      uses_v12 = any(v12_types == model%layers(i)%l%type_name)
    end do
  end function uses_v12

  subroutine write_native(model, path, stat, msg, train)
    type(fkb_model_t), intent(in) :: model
    type(train_record_t), intent(in), optional :: train
    character(len=*), intent(in) :: path
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    character(len=:), allocatable :: header
    character(len=256) :: iomsg
    integer :: u, ios, i, k
    integer(int32) :: minor
    stat = FKB_OK
    if (.not. host_is_little_endian()) then
      call set_error(stat, msg, FKB_ERR_UNSUPPORTED, 'big-endian hosts are not supported')
      return
    end if
    header = model%header(train)
    open (newunit=u, file=path, access='stream', form='unformatted', status='replace', &
          action='write', iostat=ios, iomsg=iomsg)
    if (ios /= 0) then
      call set_error(stat, msg, FKB_ERR_IO, "cannot write '" // path // "': " // trim(iomsg))
      return
    end if
    minor = 1
    if (uses_v12(model)) minor = FORMAT_MINOR
    write (u, iostat=ios, iomsg=iomsg) MAGIC, FORMAT_MAJOR, minor, int(len(header), int64), header
    do i = 1, model%n_layers
      if (ios /= 0) exit
      if (.not. allocated(model%layers(i)%l%params)) cycle
      do k = 1, size(model%layers(i)%l%params)
        associate (t => model%layers(i)%l%params(k))
          if (model%dtype == FKB_FLOAT64) then
            write (u, iostat=ios, iomsg=iomsg) t%r64
          else
            write (u, iostat=ios, iomsg=iomsg) t%r32
          end if
        end associate
        if (ios /= 0) exit
      end do
    end do
    if (present(train) .and. ios == 0) then
      do k = 1, size(train%slots)
        write (u, iostat=ios, iomsg=iomsg) train%slots(k)%m
        if (ios /= 0) exit
      end do
    end if
    if (ios /= 0) then
      call set_error(stat, msg, FKB_ERR_IO, "cannot write '" // path // "': " // trim(iomsg))
      close (u, status='delete')
      return
    end if
    close (u, iostat=ios)
    if (ios /= 0) call set_error(stat, msg, FKB_ERR_IO, "cannot close '" // path // "'")
  end subroutine write_native

end module fkb_io_native
